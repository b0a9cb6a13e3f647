"""ParallelTestConfig: flags, then PARALLEL_ORCH_* environment, then pyproject, then defaults."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from parallel_orch.exceptions import RepoError
from parallel_orch.gitrepo import toplevel
from parallel_orch.pyproject import STATE_DIR_NAME, pyproject_table
from parallel_orch.report.options import Gates, ReportOptions, check_notify_url

#: ``[tcp|tls|ws|wss|ucx://]HOST:PORT``, HOST a name, an IPv4 address or a bracketed IPv6 one.
SCHEDULER_ADDRESS = re.compile(
    r"^(?:(?:tcp|tls|ws|wss|ucx)://)?(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):[0-9]{1,5}$"
)


class _PyprojectSource(PydanticBaseSettingsSource):
    """``[tool.parallel-orch]`` from the repo's ``pyproject.toml``."""

    def __init__(self, settings_cls: type[BaseSettings], repo: Path | None) -> None:
        super().__init__(settings_cls)
        self._data: dict[str, Any] = pyproject_table(repo)

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return self._data.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return {k: v for k, v in self._data.items() if k in self.settings_cls.model_fields}


class ParallelTestConfig(BaseSettings):
    """How the orchestrator runs. Unset paths are derived from ``repo``."""

    model_config = SettingsConfigDict(
        env_prefix="PARALLEL_ORCH_", extra="forbid", env_nested_delimiter="__"
    )

    repo: Path = Field(default=None, validate_default=False)  # type: ignore[assignment]
    num_workers: int = Field(default_factory=lambda: os.cpu_count() or 1, ge=1, le=256)
    worktree_base_dir: Path | None = None
    state_dir: Path | None = None
    max_queue_size: int = Field(default=10_000, ge=1)
    max_retries_per_test: int = Field(default=3, ge=0)
    default_timeout: float = Field(default=600.0, gt=0)
    kill_grace_seconds: float = Field(default=5.0, ge=0)
    cleanup_on_completion: bool = False
    preserve_failed_worktrees: bool = False
    spare_worktrees: int = Field(default=1, ge=0, le=256)
    max_failures: int | None = Field(default=None, ge=1)
    log_tail_bytes: int = Field(default=16_384, ge=0)
    socket_path: Path | None = None  # the daemon's socket; default from the state dir
    plans_root: Path | None = None  # test ids are relative to it; default <repo>/plans
    gates: Gates = Field(default_factory=Gates)  # [tool.parallel-orch.gates]
    quarantine: dict[str, str] = Field(default_factory=dict)  # test id -> why quarantined
    notify_url: str | None = None  # POST each session's report JSON here when it ends
    executor: Literal["local", "dask"] = "local"  # where attempts run: here, or a Dask fleet
    dask_scheduler: str | None = None  # tcp://HOST:PORT; none: a LocalCluster for the session
    dask_repo_url: str | None = None  # what Dask workers clone; default this repo's path
    dask_worker_dir: str | None = None  # where workers keep clones and pools
    dask_connect_seconds: float = Field(default=10.0, gt=0)  # to reach the scheduler at start

    @field_validator("notify_url")
    @classmethod
    def _webhook(cls, url: str | None) -> str | None:
        return check_notify_url(url) if url is not None else None

    @field_validator("dask_scheduler")
    @classmethod
    def _scheduler_address(cls, value: str | None) -> str | None:
        if value is not None and not SCHEDULER_ADDRESS.match(value):
            raise ValueError(
                f"{value!r} is not a Dask scheduler address; give tcp://HOST:PORT, as "
                "`dask scheduler` prints it"
            )
        return value

    @field_validator("dask_repo_url")
    @classmethod
    def _repo_url(cls, value: str | None) -> str | None:
        if value is not None and (not value.strip() or value.startswith("-") or "\n" in value):
            raise ValueError(f"{value!r} is not a repo URL or path workers can clone")
        return value

    @field_validator("quarantine", mode="before")
    @classmethod
    def _quarantine_list(cls, value: Any) -> Any:
        """A list of test ids is quarantined with a reason saying where it came from."""
        if isinstance(value, list):
            return {str(test_id): "quarantined in the configuration" for test_id in value}
        return value

    @field_validator("repo", mode="before")
    @classmethod
    def _default_repo(cls, value: Any) -> Any:
        return toplevel(Path.cwd()) if value in (None, "") else value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        repo = init_settings().get("repo") or env_settings().get("repo")
        top: Path | None
        try:
            top = toplevel(Path(repo) if repo else Path.cwd())
        except RepoError:
            top = Path(repo) if repo else None
        return (init_settings, env_settings, _PyprojectSource(settings_cls, top))

    def model_post_init(self, context: Any, /) -> None:
        if self.repo is None:
            self.repo = toplevel(Path.cwd())
        self.repo = self.repo.expanduser().resolve()

    @property
    def resolved_plans_root(self) -> Path:
        """What test ids are relative to (default ``<repo>/plans``)."""
        root = self.plans_root if self.plans_root is not None else Path("plans")
        return (self.repo / root.expanduser()).resolve()

    def report_options(self, given: ReportOptions | None = None) -> ReportOptions:
        """How a session is judged and sent: ``given``, with this configuration's gates
        where it gives none and its webhook where it names none."""
        if given is None:
            return ReportOptions(gates=self.gates, notify_url=self.notify_url)
        return given.model_copy(
            update={
                "gates": given.gates if given.gates.any else self.gates,
                "notify_url": given.notify_url or self.notify_url,
            }
        )

    @property
    def resolved_state_dir(self) -> Path:
        """Where the SQLite store and logs live (default ``<repo>/.parallel-orch``)."""
        return (self.state_dir or self.repo / STATE_DIR_NAME).expanduser().resolve()

    @property
    def resolved_worktree_dir(self) -> Path:
        """Where pooled worktrees live (default the sibling ``../<repo>.worktrees``)."""
        if self.worktree_base_dir is not None:
            return self.worktree_base_dir.expanduser().resolve()
        return self.repo.parent / f"{self.repo.name}.worktrees"
