"""How much of a file is in the page cache, read with util-linux's ``fincore``."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

FINCORE = shutil.which("fincore")

needs_fincore = pytest.mark.skipif(
    FINCORE is None or not hasattr(os, "posix_fadvise"),
    reason="needs Linux's posix_fadvise and util-linux's fincore",
)
"""Marks tests that look at the page cache."""


def resident(path: Path) -> int:
    """Bytes of ``path`` in the page cache."""
    assert FINCORE is not None
    out = subprocess.run(
        [FINCORE, "--bytes", "--noheadings", "--output", "RES", str(path)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return int(out.strip())
