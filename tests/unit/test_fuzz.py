"""Property-based fuzzing: the plan loader and the protocol decoder take anything.

Every input is either accepted or refused with our own error (a PlanError, an
RpcError); nothing else escapes. The example budget is small in `make test`;
`make fuzz` runs the `fuzz` profile (10,000 examples each).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from parallel_orch.daemon.protocol import Method, RpcError, parse_params, parse_request
from parallel_orch.exceptions import PlanError
from parallel_orch.models import TestRequest
from parallel_orch.plans import load_plans

settings.register_profile(
    "ci", max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "fuzz", max_examples=10_000, deadline=None, suppress_health_check=list(HealthCheck)
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

VALID_PLAN = """\
[defaults]
timeout = "5m"
retries = 1
env = { A = "1" }
keep = [".venv/"]

[[test]]
id = "core"
run = "python -m pytest -q"
junit = true
refs = ["main", "dev"]
repeat = 2

[[test]]
id = "cli"
run = ["python", "-m", "pytest"]
cwd = "src"
"""

KEYS = ["id", "run", "ref", "refs", "repeat", "timeout", "retries", "env", "cwd", "junit",
        "setup", "keep", "priority", "category", "description", "colour"]  # fmt: skip
TOML_VALUES = st.one_of(
    st.integers(-5, 10**20).map(str),
    st.floats(allow_nan=True).map(lambda f: repr(f).replace("inf", "inf")),
    st.text(max_size=30).map(json.dumps),
    st.lists(st.text(max_size=10).map(json.dumps), max_size=3).map(lambda v: f"[{', '.join(v)}]"),
    st.sampled_from(["true", "false", "[]", "{}", '{ A = "x" }', '"5m"', '"-1s"', '"../.."']),
)
TABLE = st.lists(st.tuples(st.sampled_from(KEYS), TOML_VALUES), max_size=6).map(
    lambda pairs: "".join(f"{k} = {v}\n" for k, v in pairs)
)
PLANS = st.one_of(
    st.text(max_size=300),  # anything at all
    st.lists(
        st.tuples(st.sampled_from(["[[test]]", "[defaults]", "[[test]]", "[other]"]), TABLE),
        max_size=4,
    ).map(lambda tables: "".join(f"{h}\n{body}" for h, body in tables)),
    st.tuples(st.integers(0, len(VALID_PLAN)), st.text(max_size=20), st.integers(0, 20)).map(
        lambda m: VALID_PLAN[: m[0]] + m[1] + VALID_PLAN[m[0] + m[2] :]  # a valid plan, mutated
    ),
)


def load(content: str | bytes, suffix: str) -> list[TestRequest] | PlanError:
    with tempfile.TemporaryDirectory() as tmp:
        plan = Path(tmp) / f"plan{suffix}"
        data = content if isinstance(content, bytes) else content.encode("utf-8", "surrogatepass")
        plan.write_bytes(data)
        try:
            return load_plans([plan])
        except PlanError as exc:
            return exc


@given(PLANS | st.binary(max_size=200), st.sampled_from([".toml", ".md"]))
def test_any_plan_text_loads_or_is_a_plan_error(content: str | bytes, suffix: str) -> None:
    """Random, mutated and non-UTF-8 plans: requests, or a PlanError naming the file."""
    if suffix == ".md":
        wrap = "+++\n{}\n+++\n```sh\ntrue\n```\n"
        content = (
            wrap.format(content)
            if isinstance(content, str)
            else wrap.encode().replace(b"{}", content)
        )
    outcome = load(content, suffix)
    if isinstance(outcome, PlanError):
        assert outcome.path is not None and outcome.message
    else:
        assert all(isinstance(r, TestRequest) for r in outcome)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)
REQUESTS = st.fixed_dictionaries(
    {},
    optional={
        "jsonrpc": st.sampled_from(["2.0", "1.0", 2]),
        "id": JSON,
        "method": st.sampled_from([m.value for m in Method]) | st.text(max_size=10),
        "params": JSON,
        "extra": JSON,
    },
)
LINES = st.one_of(
    st.binary(max_size=200),
    JSON.map(lambda v: json.dumps(v).encode()),
    REQUESTS.map(lambda v: json.dumps(v).encode()),
    st.tuples(REQUESTS, st.integers(0, 60), st.binary(max_size=5)).map(
        lambda m: json.dumps(m[0]).encode()[: m[1]] + m[2]  # cut short and garbled
    ),
)


@given(LINES)
def test_any_protocol_line_is_a_request_or_an_rpc_error(line: bytes) -> None:
    """Random and mutated JSON-RPC lines: a typed request and params, or an RpcError."""
    try:
        request = parse_request(line)
    except RpcError as exc:
        assert exc.message
        return
    if request.method not in {m.value for m in Method}:
        return  # an unknown method name: the service answers -32601 for it
    method = Method(request.method)
    params: dict[str, Any] = request.params
    try:
        parse_params(method, params)
    except RpcError as exc:
        assert exc.message
