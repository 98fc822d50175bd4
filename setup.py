"""Builds cdnrec: the metadata is in pyproject.toml; this file only compiles the engine's
per-frame modules with mypyc (decision 0008).

Those modules are typed Python that mypyc turns into C extension modules, which Python imports
instead of the source beside them. Where there is no C compiler (or ``CDNREC_INTERPRETED=1`` is
set at install), cdnrec installs without them and runs the same source interpreted.
"""

from __future__ import annotations

import os
import sys

from setuptools import setup
from setuptools.command.build_ext import build_ext

NATIVE = [
    "src/cdnrec/engine/flv/amf0.py",
    "src/cdnrec/engine/flv/tags.py",
    "src/cdnrec/engine/rtmp/chunks.py",
    "src/cdnrec/engine/rtmp/session.py",
    "src/cdnrec/engine/sources/flvpull.py",
    "src/cdnrec/engine/formats/flvtag.py",
    "src/cdnrec/engine/formats/copy.py",
    "src/cdnrec/engine/recorder.py",
]
"""The modules a recorded frame passes through: RTMP chunks, FLV tags, the pull's reading loop,
the recorder's loop and the writers."""

MYPY_OPTIONS = [
    # the build environment has mypy but not cdnrec's dependencies: they are typed as Any here
    "--config-file=",
    "--ignore-missing-imports",
    "--follow-imports=silent",
    "--python-version=3.11",
]


class OptionalBuildExt(build_ext):
    """Builds the compiled modules, or none of them: a failure leaves pure Python (warned), and
    removes what an earlier build left beside the sources (it would run instead of them)."""

    def run(self) -> None:
        try:
            super().run()
        except Exception as e:  # no compiler, no headers: the source runs interpreted
            for path in [*self.get_outputs(), *self._beside_sources()]:
                if os.path.exists(path):
                    os.remove(path)
            print(f"cdnrec: not compiled, the engine runs interpreted: {e}", file=sys.stderr)

    def _beside_sources(self) -> list[str]:
        """Where an editable install puts the compiled modules: next to their sources."""
        build_py = self.get_finalized_command("build_py")
        paths = []
        for ext in self.extensions:
            package = ext.name.rpartition(".")[0]
            filename = os.path.basename(self.get_ext_filename(ext.name))
            paths.append(os.path.join(build_py.get_package_dir(package), filename))
        return paths


def native_modules() -> list[object]:
    """mypyc's extension modules, or none when they cannot (or should not) be built."""
    if os.environ.get("CDNREC_INTERPRETED"):
        return []
    try:
        from mypyc.build import mypycify

        return list(mypycify([*MYPY_OPTIONS, *NATIVE], group_name="cdnrec_native"))
    except (Exception, SystemExit) as e:  # no mypyc, or a module it cannot compile
        print(f"cdnrec: not compiled, the engine runs interpreted: {e}", file=sys.stderr)
        return []


if __name__ == "__main__":  # as setuptools runs it (the tests import NATIVE)
    setup(ext_modules=native_modules(), cmdclass={"build_ext": OptionalBuildExt})
