"""The engine's compiled modules: built where CI builds, never stale, and switched off on demand."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cdnrec.engine.recorder  # noqa: F401 - imports every module a recorded frame passes
from cdnrec import native
from tests.conftest import IN_CI

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
try:
    from setup import NATIVE
finally:
    sys.path.remove(str(ROOT))

NATIVE_MODULES = sorted(
    p.removeprefix("src/").removesuffix(".py").replace("/", ".") for p in NATIVE
)


def _loaded_in_child(env: dict[str, str]) -> dict[str, list[str]]:
    """What a fresh interpreter that imports the engine runs compiled."""
    code = (
        "import json, cdnrec.engine.recorder, cdnrec.engine.supervisor\n"
        "from cdnrec import native\n"
        "print(json.dumps({'compiled': native.compiled_modules(), "
        "'files': [cdnrec.engine.recorder.__file__]}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    return dict(json.loads(out.stdout))


def test_no_compiled_module_is_older_than_its_source() -> None:
    assert native.stale_modules() == [], "the engine's sources changed: run `make install`"


def test_the_switch_loads_every_module_from_source() -> None:
    env = {**os.environ, native.SWITCH: "1"}
    loaded = _loaded_in_child(env)
    assert loaded["compiled"] == []
    assert loaded["files"][0].endswith("recorder.py")


def test_what_setup_compiles_is_what_runs_compiled() -> None:
    env = {k: v for k, v in os.environ.items() if k != native.SWITCH}
    compiled = _loaded_in_child(env)["compiled"]
    if IN_CI:  # CI installs on a machine with a compiler: the build must not fall back
        assert compiled == NATIVE_MODULES
    else:  # either all of them (a compiler was there) or none (the fallback)
        assert compiled in ([], NATIVE_MODULES)
