"""The memory allocator of the `jiyi` command's process: jemalloc where it is installed.

Training on batches of random texts with steps on real tokens only (`jiyi.unpadded`) allocates
tensors of a different size at every step. glibc's malloc serves that pattern badly: the
default MiniLM run on Rotten Tomatoes (2 cores, bf16) took 347 s and 3.7 GB on it, 245 s and
2.5 GB on jemalloc set up as below (bench/RESULTS.md, "The allocator"). A process cannot swap
its allocator once it runs, so the command re-executes itself once at start-up with jemalloc
preloaded when the shared library is on the machine (Debian/Ubuntu: `apt install libjemalloc2`;
about 0.05 s), as Intel's PyTorch launcher does. The environment its own child processes see is the user's.

jemalloc is configured (`JEMALLOC_CONF`, unless MALLOC_CONF is set) to give the pages it frees
back lazily (MADV_FREE: the kernel takes them when it needs memory), large tensors included:
by default it hands tensors over 8 MiB straight back to the kernel and faults them in again at
the next batch, which made prediction 14% slower than on glibc.

JIYI_ALLOCATOR=system keeps the system's allocator; an allocator already preloaded by the user
(tcmalloc, mimalloc, jemalloc) is kept. Library use (`jiyi.load`) runs in the caller's process
and gets whatever that process has: `LD_PRELOAD=/path/to/libjemalloc.so.2 python app.py`.
"""

from __future__ import annotations

import json
import os
import platform
import sys
from pathlib import Path

# "system" keeps the system's allocator; anything else: jemalloc where it is installed
ENV = "JIYI_ALLOCATOR"
# set on the re-executed process only: the user's values of what the re-execution set (JSON)
BEFORE_ENV = "JIYI_ALLOCATOR_ENV_BEFORE"
JEMALLOC = "libjemalloc.so.2"
# large allocations in the ordinary arenas (not the one that purges at once), and freed pages
# given back lazily: the kernel takes them when it needs memory
JEMALLOC_CONF = "oversize_threshold:4294967296,muzzy_decay_ms:-1"
PRELOADED = ("jemalloc", "tcmalloc", "mimalloc")  # allocators a process may already run on


def opted_out() -> bool:
    """JIYI_ALLOCATOR=system: the user keeps the system's allocator."""
    return os.environ.get(ENV, "").lower() == "system"


def library_dirs() -> list[Path]:
    """Where shared libraries live on Linux: the multiarch folders of Debian/Ubuntu, those of
    Fedora/Arch/Alpine, /usr/local, and this Python's prefix (conda installs jemalloc there)."""
    arch = f"{platform.machine()}-linux-gnu"
    roots = ("/usr/lib", "/lib", "/usr/local/lib")
    dirs = [Path(root, arch) for root in roots] + [Path("/usr/lib64"), *map(Path, roots)]
    return [*dirs, Path(sys.prefix, "lib"), Path(sys.base_prefix, "lib")]


def jemalloc_library() -> Path | None:
    """The installed jemalloc shared library, or None."""
    return next((d / JEMALLOC for d in library_dirs() if (d / JEMALLOC).is_file()), None)


def allocator_in_use() -> str:
    """The allocator this process runs on: "jemalloc", "tcmalloc" or "mimalloc" where one is
    mapped into it (from /proc/self/maps), else "system"."""
    try:
        maps = Path("/proc/self/maps").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "system"
    return next((name for name in PRELOADED if f"lib{name}" in maps), "system")


def restore_environment() -> None:
    """In the re-executed process: give the environment back the user's LD_PRELOAD and
    MALLOC_CONF, so the programs this one starts (a browser, a compiler) run as the user would
    run them."""
    try:
        before = json.loads(os.environ.pop(BEFORE_ENV, "{}"))
    except ValueError:  # not ours
        return
    for name, value in before.items() if isinstance(before, dict) else ():
        if value is None:
            os.environ.pop(name, None)
        elif isinstance(value, str):
            os.environ[name] = value


def reexec_with_jemalloc() -> None:
    """Replace this process by itself with jemalloc preloaded, when that helps and can work:
    on Linux, jemalloc installed, no other allocator preloaded, JIYI_ALLOCATOR not "system",
    and not already re-executed (a preload the loader refused is not retried). Returns when
    it does not re-execute; call it before any thread starts."""
    if BEFORE_ENV in os.environ:  # this is the re-executed process
        restore_environment()
        return
    if sys.platform != "linux" or opted_out():
        return
    library = jemalloc_library()
    if library is None or allocator_in_use() != "system":
        return
    before = {name: os.environ.get(name) for name in ("LD_PRELOAD", "MALLOC_CONF")}
    env = {
        **os.environ,
        "LD_PRELOAD": f"{library} {before['LD_PRELOAD'] or ''}".strip(),
        "MALLOC_CONF": before["MALLOC_CONF"] or JEMALLOC_CONF,
        BEFORE_ENV: json.dumps(before),
    }
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], env)
    except OSError:  # cannot exec (a sandbox, a frozen binary): run on the system's allocator
        return


def allocator_report() -> str:
    """This process's allocator, and why it is not jemalloc when it is not (for `jiyi env`)."""
    in_use = allocator_in_use()
    if in_use != "system":
        return in_use
    if opted_out():
        return f"system ({ENV}=system)"
    if sys.platform != "linux":
        return "system"
    if jemalloc_library() is None:
        return "system (jemalloc is not installed: `apt install libjemalloc2` trains faster)"
    return "system (jemalloc is installed; the `jiyi` command runs on it)"
