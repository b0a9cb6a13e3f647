"""Defaults that ``--help`` shows and the engine uses, in a module that imports nothing.

``parallel-orch --help`` builds every command's options; their defaults must
not cost the modules that use them.
"""

from __future__ import annotations

HISTORY_LIMIT = 20  # executions `history` lists
FLAKY_SESSIONS = 20  # sessions `flaky` looks back over
MAX_SHARDS = 1_000  # parts one test's run may be split into (`shards`)
MAX_REPEAT = 10_000  # runs of one test in a session (`repeat`)
MAX_SHARD_REQUESTS = 100_000  # shards a session's sharded tests become, all together
