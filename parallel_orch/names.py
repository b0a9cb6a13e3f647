"""File names derived from test ids: they never leave their folder."""

from __future__ import annotations

import re
from hashlib import sha1

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_name(test_id: str) -> str:
    """A file name for ``test_id`` that cannot leave its folder, unique per id."""
    digest = sha1(test_id.encode(), usedforsecurity=False).hexdigest()[:8]
    stem = _UNSAFE.sub("_", test_id).strip("._")[:80] or "test"
    return f"{stem}-{digest}"
