"""Defaults that ``--help`` shows and the engine uses, in a module that imports nothing.

``parallel-orch --help`` builds every command's options; their defaults must
not cost the modules that use them.
"""

from __future__ import annotations

HISTORY_LIMIT = 20  # executions `history` lists
FLAKY_SESSIONS = 20  # sessions `flaky` looks back over
