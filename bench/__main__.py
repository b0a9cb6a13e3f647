"""Run every benchmark (or the ones named): ``python -m bench [--quick] [NAME ...]``."""

from __future__ import annotations

import importlib
import pkgutil
import sys
import traceback
from collections.abc import Callable, Sequence
from types import ModuleType

import bench
from bench.common import Figure, header, is_quick, run_benchmark

#: The issue's four benchmarks, in this order; other benchmark modules follow by name.
CORE = ("isolation", "leases", "scheduling", "suite")
HELPERS = frozenset({"common"})


def benchmark_modules() -> list[str]:
    """Modules of this package that define ``run(quick)`` and ``main()``: the core ones first."""
    found = []
    for info in pkgutil.iter_modules(bench.__path__):
        if info.name.startswith("_") or info.name in HELPERS or info.name in CORE:
            continue
        module = importlib.import_module(f"bench.{info.name}")
        if callable(getattr(module, "run", None)) and callable(getattr(module, "main", None)):
            found.append(info.name)
    return [*CORE, *sorted(found)]


def title_of(module: ModuleType) -> str:
    return (module.__doc__ or module.__name__).strip().splitlines()[0].rstrip(".")


def main(argv: Sequence[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else list(argv)
    quick = is_quick(args)
    wanted = [a for a in args if not a.startswith("-")]
    names = benchmark_modules()
    unknown = [w for w in wanted if w not in names]
    if unknown:
        print(f"unknown benchmark(s): {', '.join(unknown)}; known: {', '.join(names)}")
        return 2
    results: list[tuple[str, list[Figure] | None]] = []
    for name in wanted or names:
        module = importlib.import_module(f"bench.{name}")
        run: Callable[[bool], list[Figure]] = module.run
        try:
            results.append((name, run_benchmark(f"{name}: {title_of(module)}", run, quick)))
        except Exception:  # a crash in one benchmark should not hide the others' figures
            traceback.print_exc()
            results.append((name, None))
    header("summary" + (" (quick)" if quick else ""))
    for name, figures in results:
        if figures is None:
            print(f"  {name}: CRASHED (traceback above)")
            continue
        for figure in figures:
            print(f"  {figure.render()}")
    # Missed targets are figures, not failures; only a crash makes this exit non-zero.
    return 1 if any(figures is None for _, figures in results) else 0


if __name__ == "__main__":
    sys.exit(main())
