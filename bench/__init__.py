"""Benchmarks of parallel-orch: they print figures and ratios measured side by side, never fail.

``python -m bench`` runs them all (``--quick`` or ``BENCH_QUICK=1`` for smaller
sizes); ``python -m bench.<name>`` runs one. See ``bench/README.md``.
"""
