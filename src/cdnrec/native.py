"""Which cdnrec modules run compiled, and the switch that runs them all interpreted.

Installed on a machine with a C compiler, the engine's per-frame modules are compiled by mypyc
(``setup.py``, decision 0008): each compiled module sits beside its source, and Python imports
it first. ``CDNREC_INTERPRETED=1`` in the environment makes every cdnrec module load from its
source instead (how the tests run the fallback, and how a Python profiler sees every line).
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

SWITCH = "CDNREC_INTERPRETED"
"""The environment variable that turns compiled modules off (any non-empty value)."""


class _SourceFirst(importlib.abc.MetaPathFinder):
    """Finds cdnrec modules whose compiled form would be imported, and loads their source."""

    def find_spec(
        self, name: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if not name.startswith("cdnrec."):
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or not isinstance(spec.loader, importlib.machinery.ExtensionFileLoader):
            return None
        source = _source_of(str(spec.origin))
        return importlib.util.spec_from_file_location(name, source) if source.exists() else None


def _source_of(compiled: str) -> Path:
    """The ``.py`` beside a compiled module (``chunks.cpython-311-x86_64-linux-gnu.so``)."""
    path = Path(compiled)
    return path.with_name(path.name.split(".", 1)[0] + ".py")


def interpreted() -> bool:
    """Whether the switch is on in this process."""
    return bool(os.environ.get(SWITCH))


def install_switch() -> None:
    """Load cdnrec modules from source from now on, when the switch is on (at import of
    ``cdnrec``, before any compiled module is imported)."""
    if interpreted() and not any(isinstance(f, _SourceFirst) for f in sys.meta_path):
        sys.meta_path.insert(0, _SourceFirst())


def compiled_modules() -> list[str]:
    """The cdnrec modules imported so far that run compiled."""
    return sorted(
        name
        for name, module in list(sys.modules.items())
        if name.startswith("cdnrec.") and _is_compiled(module)
    )


def stale_modules() -> list[str]:
    """Compiled modules imported so far whose source changed after they were built (the
    compiled code is what runs: reinstall with ``make install``)."""
    stale = []
    for name in compiled_modules():
        compiled = str(sys.modules[name].__file__)
        source = _source_of(compiled)
        if source.exists() and source.stat().st_mtime > Path(compiled).stat().st_mtime:
            stale.append(name)
    return stale


def _is_compiled(module: ModuleType) -> bool:
    path = getattr(module, "__file__", None) or ""
    return path.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES))
