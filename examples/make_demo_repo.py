"""Build the small demo repo the example plans run against.

Usage: python examples/make_demo_repo.py [DEST]   (default: examples/.demo-repo)

The repo has a `main` branch with a tiny Python package and its tests, a
`feature/fast` branch that changes it, a `broken` branch whose tests fail,
and a tag `v1`. Run the showcase with:

    parallel-orch run --repo examples/.demo-repo examples/.demo-repo/plans
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
IDENTITY = {
    "GIT_AUTHOR_NAME": "parallel-orch demo",
    "GIT_AUTHOR_EMAIL": "demo@parallel-orch.invalid",
    "GIT_COMMITTER_NAME": "parallel-orch demo",
    "GIT_COMMITTER_EMAIL": "demo@parallel-orch.invalid",
}

CALC = '''\
def add(a: int, b: int) -> int:
    return a + b


def slow_sum(n: int) -> int:
    import time

    time.sleep(0.5)
    return sum(range(n))
'''

TESTS = '''\
import unittest

from calc import add, slow_sum


class CalcTest(unittest.TestCase):
    def test_add(self) -> None:
        self.assertEqual(add(2, 3), 5)

    def test_slow_sum(self) -> None:
        self.assertEqual(slow_sum(4), 6)


if __name__ == "__main__":
    unittest.main()
'''


def git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(repo), *args], check=True, env={**os.environ, **IDENTITY},
                   stdout=subprocess.DEVNULL)


def main(dest: Path) -> None:
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    git(dest, "init", "-q", "-b", "main")
    (dest / "calc.py").write_text(CALC)
    (dest / "test_calc.py").write_text(TESTS)
    (dest / ".gitignore").write_text("__pycache__/\n")
    shutil.copytree(HERE / "plans", dest / "plans")
    git(dest, "add", "-A")
    git(dest, "commit", "-q", "-m", "calc and its tests")
    git(dest, "tag", "v1")
    git(dest, "checkout", "-q", "-b", "feature/fast")
    (dest / "calc.py").write_text(CALC.replace("time.sleep(0.5)", "time.sleep(0.1)"))
    git(dest, "commit", "-q", "-am", "faster slow_sum")
    git(dest, "checkout", "-q", "-b", "broken", "main")
    (dest / "calc.py").write_text(CALC.replace("return a + b", "return a - b"))
    git(dest, "commit", "-q", "-am", "break add")
    git(dest, "checkout", "-q", "main")
    print(dest)


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE / ".demo-repo")
