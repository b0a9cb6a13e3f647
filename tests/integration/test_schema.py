"""Schema upgrades: stores of earlier releases open in place; a newer one is refused."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine
from sqlmodel import SQLModel

from parallel_orch import SessionStatus, TestRequest
from parallel_orch.exceptions import StoreError
from parallel_orch.report import load_report
from parallel_orch.store import DB_FILENAME, open_store
from parallel_orch.store.schema import MIGRATIONS, SCHEMA_REVISION, _config
from tests.helpers import MakeConfig, orchestrator

DATA = Path(__file__).parents[1] / "data"
#: SQL dumps of stores made by earlier code: two finished sessions each.
RELEASES = ["store-3da351f.sql", "store-6590318.sql"]


def restore(dump: str, state_dir: Path) -> Path:
    """A store in ``state_dir`` made from the SQL dump ``dump``."""
    state_dir.mkdir(parents=True)
    path = state_dir / DB_FILENAME
    with sqlite3.connect(path) as db:
        db.executescript((DATA / dump).read_text())
    return path


def dump_of(path: Path) -> list[str]:
    """Every statement that would remake the store: its schema and its rows."""
    with sqlite3.connect(path) as db:
        return list(db.iterdump())


def schema_diff(path: Path) -> list[object]:
    """Differences between the store's tables and the SQLModel metadata (none expected)."""
    engine = create_engine(f"sqlite:///{path}")
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), SQLModel.metadata)
    engine.dispose()
    return list(diff)


@pytest.mark.parametrize("dump", RELEASES)
async def test_a_store_of_an_earlier_release_opens_keeps_its_history_and_records_more(
    dump: str, make_config: MakeConfig, tmp_path: Path
) -> None:
    """An old store is upgraded in place: its sessions and reports stay, new ones are added."""
    state_dir = tmp_path / "state"
    path = restore(dump, state_dir)
    async with open_store(state_dir) as store:
        before = await store.recent_sessions()
        reports = [await load_report(store, s.id) for s in before]
    assert len(before) == 2 and all(r.status != "running" for r in reports)
    assert {r.total_tests for r in reports} == {1, 2}
    assert schema_diff(path) == []
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT version_num FROM alembic_version").fetchall() == [
            (SCHEMA_REVISION,)
        ]
    async with orchestrator(make_config(state_dir=state_dir)) as orch:
        report = await orch.run_tests([TestRequest(id="new", command="true")], priority=0)
        assert report.status == SessionStatus.COMPLETE
        after = await orch.store.recent_sessions()
        old_reports = [await orch.report(s.id) for s in before]
    assert {s.id for s in before} < {s.id for s in after} and len(after) == 3
    assert old_reports == reports


async def test_a_new_store_is_made_by_the_migrations_and_matches_the_tables(
    tmp_path: Path,
) -> None:
    """A fresh store is at the head revision, and its tables are exactly the models'."""
    async with open_store(tmp_path / "state"):
        pass
    assert schema_diff(tmp_path / "state" / DB_FILENAME) == []
    head = ScriptDirectory.from_config(_config(None)).get_current_head()  # type: ignore[arg-type]
    assert head == SCHEMA_REVISION


async def test_a_store_from_a_newer_release_is_refused_untouched(tmp_path: Path) -> None:
    """A revision this release does not know: a clear StoreError, and the file unchanged."""
    state_dir = tmp_path / "state"
    path = restore("store-3da351f.sql", state_dir)
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL)")
        db.execute("INSERT INTO alembic_version VALUES ('9999')")
    before = dump_of(path)
    with pytest.raises(StoreError, match=r"schema revision '9999', newer than this"):
        async with open_store(state_dir):
            pass
    assert dump_of(path) == before
    assert MIGRATIONS.is_dir()
