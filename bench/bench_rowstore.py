"""A memory's row store: Parquet parts with an id index (`jiyi.memory.rowstore`, read on demand)
against the one rows.parquet that opening read whole before them, on the same rows.

    .venv/bin/python bench/bench_rowstore.py --rows 1000000

The rows: ~105-character texts of random words, ids like `ticket-000000001`, one of two labels,
a small JSON payload; 384-d vectors, memory-mapped as an ivfpq memory's are (so the figures
are the row store's). The snapshot is written once with `Store.write_snapshot` (parts) and
copied into the old layout. Each layout is then measured in a process of its own:

- open: `Store.load` wall seconds, and RSS growth (VmRSS after the open minus before);
- hits: the id, text, label and payload of 10 random rows (what one query's answer reads),
  1,000 times: p50 and p99 ms;
- id lookups: `rows.position.get` of a random stored id and of an absent one, 1,000 each;
- compaction: one row forgotten, then `Store.write_snapshot`: wall seconds, and the process's
  peak anonymous RSS (RssAnon sampled every 5 ms: the memory it holds; the memory-mapped
  vectors' pages are the page cache's and are left out).

Writes OUTPUT/rowstore.json and .md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from common import cpu_model, md_table, read_json, usable_cores, write_json

MB = 1024 * 1024
DIM = 384


def rss(field: str = "VmRSS") -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    return 0


def manifest() -> dict[str, Any]:
    return {
        "format": 1, "model": "none", "fingerprint": "bench", "pooling": "mean",
        "layers": "-1", "max_length": 512, "dim": DIM, "task": "classification",
        "index": "ivfpq", "index_params": {}, "payload_columns": ["queue"],
    }  # fmt: skip


def write_snapshot(path: Path, n: int) -> None:
    """A memory whose one snapshot holds `n` rows in parts (written in blocks of 100,000)."""
    from jiyi.memory.store import Store

    rng = np.random.default_rng(0)
    words = ["".join(rng.choice(list("abcdefghijklmnopqrstuvwxyz"), 5)) for _ in range(5000)]
    store = Store(path)
    state = store.create(manifest())
    block = 100_000
    for start in range(0, n, block):
        m = min(block, n - start)
        picks = rng.integers(0, len(words), size=(m, 17))
        vectors = rng.normal(size=(m, DIM)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        state.rows.append(
            {
                "slots": list(range(start, start + m)),
                "ids": [f"ticket-{i:09d}" for i in range(start, start + m)],
                "texts": [" ".join(words[w] for w in row) for row in picks],
                "labels": ["billing" if i % 2 else "outage" for i in range(start, start + m)],
                "payloads": [{"queue": i % 7} for i in range(start, start + m)],
            },
            vectors,
        )
    state.next_slot = state.next_auto_id = n
    store.write_snapshot(state, index_bytes=None, keep_dead=False)


def to_single_file(path: Path) -> None:
    """Rewrite the snapshot as the layout before the parts: one rows.parquet, no id index."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    snap = next(path.glob("snap-*"))
    parts = sorted(snap.glob("rows-*.parquet"))
    pq.write_table(pa.concat_tables(pq.read_table(p) for p in parts), snap / "rows.parquet")
    for file in [*parts, snap / "slots.npy", snap / "id_hash.npy", snap / "id_row.npy"]:
        file.unlink()
    meta = json.loads((snap / "meta.json").read_text())
    del meta["parts"]
    (snap / "meta.json").write_text(json.dumps(meta))


def percentiles(seconds: list[float]) -> dict[str, float]:
    ms = np.asarray(seconds) * 1000
    return {"p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99))}


def run_arm(path: Path, n: int) -> dict[str, Any]:
    import pyarrow  # noqa: F401  (imported before the RSS baseline, as a memory's user has it)

    from jiyi.memory.store import Store

    store = Store(path)
    before = rss()
    t0 = time.perf_counter()
    state = store.load()
    open_s = time.perf_counter() - t0
    grown = rss() - before
    rows = state.rows
    rng = np.random.default_rng(1)
    hits = []
    for _ in range(1000):
        t = time.perf_counter()
        for p in rng.integers(0, n, size=10):
            (rows.ids[p], rows.texts[p], rows.labels[p], rows.payloads[p])
        hits.append(time.perf_counter() - t)
    present, absent = [], []
    for i in rng.integers(0, n, size=1000):
        t = time.perf_counter()
        assert rows.position.get(f"ticket-{i:09d}") == i
        present.append(time.perf_counter() - t)
        t = time.perf_counter()
        assert rows.position.get(f"missing-{i}") is None
        absent.append(time.perf_counter() - t)
    rows.forget(["ticket-000000003"])
    peak = [rss("RssAnon")]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.005):
            peak[0] = max(peak[0], rss("RssAnon"))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    t0 = time.perf_counter()
    store.write_snapshot(state, index_bytes=None, keep_dead=False)
    compact_s = time.perf_counter() - t0
    done.set()
    sampler.join()
    return {
        "open_s": open_s,
        "open_rss_mib": grown / MB,
        "hits": percentiles(hits),
        "id_present": percentiles(present),
        "id_absent": percentiles(absent),
        "compact_s": compact_s,
        "peak_anon_rss_mib": max(peak[0], rss("RssAnon")) / MB,
    }


def render(result: dict[str, Any]) -> str:
    rows = []
    for name, arm in result["arms"].items():
        rows.append([
            name, f"{arm['open_s']:.2f}", f"{arm['open_rss_mib']:.0f}",
            f"{arm['hits']['p50_ms']:.2f} / {arm['hits']['p99_ms']:.2f}",
            f"{arm['id_present']['p50_ms']:.3f} / {arm['id_absent']['p50_ms']:.3f}",
            f"{arm['compact_s']:.1f}", f"{arm['peak_anon_rss_mib']:.0f}",
        ])  # fmt: skip
    table = md_table(
        ["layout", "open s", "open RSS +MiB", "10-row hit p50 / p99 ms",
         "id lookup p50 ms (stored / absent)", "compaction s", "compaction peak anon RSS MiB"],
        rows,
    )  # fmt: skip
    return (
        f"{result['rows']:,} rows, {result['cpu']}, {result['cores']} cores, {result['when']}\n\n"
        + table
        + "\n"
    )


def render_section(folder: Path) -> str:
    """This benchmark's section of RESULTS.md ("" when it has not run in FOLDER)."""
    result = read_json(folder / "rowstore.json")
    if result is None:
        return ""
    title = "## The row store in parts (bench/bench_rowstore.py)"
    return f"{title}\n\n{render(result)}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--output", type=Path, default=Path("bench/results/rowstore"))
    parser.add_argument("--arm", type=Path, help=argparse.SUPPRESS)  # a measured process
    args = parser.parse_args()
    if args.arm is not None:
        print(json.dumps(run_arm(args.arm, args.rows)))
        return
    args.output.mkdir(parents=True, exist_ok=True)
    work = args.output / "work"
    shutil.rmtree(work, ignore_errors=True)
    parts, single = work / "parts", work / "single"
    t0 = time.perf_counter()
    write_snapshot(parts, args.rows)
    written = time.perf_counter() - t0
    shutil.copytree(parts, single)
    to_single_file(single)
    result: dict[str, Any] = {
        "rows": args.rows,
        "write_s": written,
        "cpu": cpu_model(),
        "cores": usable_cores(),
        "when": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "arms": {},
    }
    for name, path in (("one rows.parquet (before)", single), ("parts + id index", parts)):
        cmd = [sys.executable, __file__, "--rows", str(args.rows), "--arm", str(path)]
        done = subprocess.run(cmd, capture_output=True, text=True, check=True, env=os.environ)
        result["arms"][name] = json.loads(done.stdout.splitlines()[-1])
        print(name, result["arms"][name], file=sys.stderr)
    shutil.rmtree(work, ignore_errors=True)
    write_json(args.output / "rowstore.json", result)
    (args.output / "rowstore.md").write_text(render(result), encoding="utf-8")
    print(render(result))


if __name__ == "__main__":
    main()
