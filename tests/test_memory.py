"""The service's threads share two malloc arenas (glibc), counted by glibc's own malloc_info."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(
    platform.libc_ver()[0] != "glibc", reason="malloc arenas are glibc's"
)

# Eight threads allocate while all eight are alive (an ended thread hands its arena on), then
# glibc's malloc_info lists one <heap> per arena.
PROGRAM = textwrap.dedent(
    """
    import ctypes, sys, threading
    from cdnrec.memory import arena_limit, limit_arenas
    done = limit_arenas() if sys.argv[1] == "limit" else False
    held = []
    alive = threading.Barrier(8)
    def work():
        held.append([bytearray(100_000) for _ in range(20)])
        alive.wait()
    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    libc = ctypes.CDLL("libc.so.6")
    libc.fopen.restype = ctypes.c_void_p
    fp = libc.fopen(sys.argv[2].encode(), b"w")
    libc.malloc_info(0, ctypes.c_void_p(fp))
    libc.fclose(ctypes.c_void_p(fp))
    print(done, arena_limit())
    """
)


def _heaps(mode: str, tmp_path: Path, env: dict[str, str]) -> tuple[int, str]:
    info = tmp_path / f"{mode}.xml"
    out = subprocess.run(
        [sys.executable, "-c", PROGRAM, mode, str(info)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return info.read_text().count("<heap nr="), out.strip()


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"}
    return env | extra


def test_limit_caps_the_arenas_of_new_threads(tmp_path: Path) -> None:
    default, said = _heaps("default", tmp_path, _env())
    assert said == "False None"
    assert default > 2, "glibc's default should give the eight threads arenas of their own"
    limited, said = _heaps("limit", tmp_path, _env())
    assert said == "True 2"
    assert limited <= 2


def test_the_environment_wins(tmp_path: Path) -> None:
    heaps, said = _heaps("limit", tmp_path, _env(MALLOC_ARENA_MAX="4"))
    assert said == "False None"
    assert 2 < heaps <= 4
