"""JUnit XML into case counts (junitparser does the format's many dialects)."""

from __future__ import annotations

from pathlib import Path

from junitparser import Error, Failure, JUnitXml, Skipped, TestSuite
from junitparser.junitparser import JUnitXmlError

from parallel_orch.models import JUnitCounts


def parse_counts(path: Path) -> JUnitCounts | None:
    """Passed, failed, errors and skipped cases in a JUnit file; None if missing or unreadable."""
    if not path.is_file() or path.stat().st_size == 0:
        return None
    try:
        xml = JUnitXml.fromfile(str(path))
    except (JUnitXmlError, OSError, ValueError, SyntaxError):
        return None
    suites = [xml] if isinstance(xml, TestSuite) else list(xml)
    passed = failed = errors = skipped = 0
    for suite in suites:
        for case in suite:
            results = list(case.result)
            if any(isinstance(r, Error) for r in results):
                errors += 1
            elif any(isinstance(r, Failure) for r in results):
                failed += 1
            elif any(isinstance(r, Skipped) for r in results):
                skipped += 1
            else:
                passed += 1
    return JUnitCounts(passed=passed, failed=failed, errors=errors, skipped=skipped)
