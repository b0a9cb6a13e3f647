"""The daemon: one repo's orchestrator served on a Unix socket (DESIGN §7).

Modules, one idea each: :mod:`~parallel_orch.daemon.protocol` (the wire
format), :mod:`~parallel_orch.daemon.paths` (where the socket lives),
:mod:`~parallel_orch.daemon.lock` (one daemon per state dir),
:mod:`~parallel_orch.daemon.service` (what each method does),
:mod:`~parallel_orch.daemon.server` (connections and framing),
:mod:`~parallel_orch.daemon.lifecycle` (start, signals, drain) and
:mod:`~parallel_orch.daemon.commands` (the CLI). The async client is
:mod:`parallel_orch.client`.

This package imports nothing heavy, so the client can use its protocol.
"""
