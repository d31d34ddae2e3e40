"""The `jiyi` command re-executes itself on jemalloc where it is installed (`jiyi.allocator`):
once, with the arguments kept, the user's LD_PRELOAD given back to its children, and never in a
loop when the loader refuses the library."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from jiyi.allocator import BEFORE_ENV, ENV, JEMALLOC_CONF, allocator_report, jemalloc_library

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="LD_PRELOAD is Linux's")

# a program that starts the way the command does, then says what it runs on and what it got
PROGRAM = """
import json, os, sys
from pathlib import Path
import jiyi.allocator as allocator
if len(sys.argv) > 1 and sys.argv[1] == "--libraries":
    allocator.library_dirs = lambda: [Path(sys.argv[2])]
allocator.reexec_with_jemalloc()
print(json.dumps({
    "allocator": allocator.allocator_in_use(),
    "preload": os.environ.get("LD_PRELOAD"),
    "marker": os.environ.get(allocator.BEFORE_ENV),
    "conf": os.environ.get("MALLOC_CONF"),
    # the environment the process started with, which jemalloc read
    "started_with": dict(
        v.split("=", 1) for v in Path("/proc/self/environ").read_text().split(chr(0)) if "=" in v
    ).get("MALLOC_CONF"),
    "argv": sys.argv[1:],
    "pid": os.getpid(),
}))
"""


def run_program(tmp_path: Path, *args: str, **env: str) -> dict:
    script = tmp_path / "program.py"
    script.write_text(PROGRAM, encoding="utf-8")
    environ = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "MALLOC_CONF", ENV)}
    proc = subprocess.run(
        [sys.executable, str(script), *args],
        env={**environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_a_library_the_loader_refuses_is_tried_once(tmp_path: Path) -> None:
    fake = tmp_path / "lib"
    fake.mkdir()
    (fake / "libjemalloc.so.2").write_bytes(b"not a shared library")
    got = run_program(tmp_path, "--libraries", str(fake))
    assert got["allocator"] == "system"  # the loader ignored it; no second re-execution
    assert got["preload"] is None and got["marker"] is None  # the user's environment again
    assert got["conf"] is None and got["started_with"] == JEMALLOC_CONF
    assert got["argv"] == ["--libraries", str(fake)]


def test_without_jemalloc_nothing_changes(tmp_path: Path) -> None:
    got = run_program(tmp_path, "--libraries", str(tmp_path / "missing"))
    assert got["allocator"] == "system" and got["preload"] is None


needs_jemalloc = pytest.mark.skipif(
    jemalloc_library() is None, reason="jemalloc is not installed (apt install libjemalloc2)"
)


@needs_jemalloc
def test_the_command_runs_on_jemalloc_and_children_get_the_users_preload(tmp_path: Path) -> None:
    got = run_program(tmp_path, "two words", "--x=1")
    assert got["allocator"] == "jemalloc"
    assert got["argv"] == ["two words", "--x=1"]  # arguments kept, spaces and all
    assert got["preload"] is None and got["marker"] is None and got["conf"] is None
    assert got["started_with"] == JEMALLOC_CONF  # jemalloc read it
    # the user's own MALLOC_CONF is what jemalloc reads, and what children see
    got = run_program(tmp_path, MALLOC_CONF="narenas:2")
    assert got["allocator"] == "jemalloc" and got["started_with"] == got["conf"] == "narenas:2"
    # a preload of the user's own stays, for this process's children, and is not doubled
    user_lib = str(jemalloc_library())
    got = run_program(tmp_path, LD_PRELOAD=user_lib)
    assert got["allocator"] == "jemalloc" and got["preload"] == user_lib


@needs_jemalloc
def test_jiyi_allocator_system_keeps_the_system_allocator(tmp_path: Path) -> None:
    assert run_program(tmp_path, **{ENV: "system"})["allocator"] == "system"


@needs_jemalloc
def test_jiyi_env_says_the_allocator(tmp_path: Path) -> None:
    jiyi = shutil.which("jiyi", path=str(Path(sys.executable).parent))
    assert jiyi is not None
    environ = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", ENV)}
    out = subprocess.run(
        [jiyi, "env", "--json"], env=environ, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["allocator"] == "jemalloc"
    out = subprocess.run(
        [jiyi, "env", "--json"],
        env={**environ, ENV: "system"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert json.loads(out.stdout)["allocator"] == f"system ({ENV}=system)"


def test_the_report_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    import jiyi.allocator as allocator

    monkeypatch.delenv(ENV, raising=False)
    monkeypatch.delenv(BEFORE_ENV, raising=False)
    monkeypatch.setattr(allocator, "allocator_in_use", lambda: "system")
    monkeypatch.setattr(allocator, "library_dirs", lambda: [])
    assert "apt install libjemalloc2" in allocator_report()
