"""jiyi's vector index at scale: flat, HNSW and IVF over a million clustered 384-d unit vectors.

    .venv/bin/python bench/bench_memory_scale.py                       # 1,000,000 vectors
    .venv/bin/python bench/bench_memory_scale.py --quick --output /tmp/memory-scale-quick

For every index kind of `jiyi.memory.index.VectorIndex`: build time (create + train + add),
memory footprint (serialised bytes and growth of the process RSS), query latency p50/p99 at
batch 1 (one query per call) and batch 64 (per batch and amortised per query), and recall@10
against exact search (ground truth: the flat index, all queries in one batch). HNSW is swept over
`ef_search`, IVF over `nprobe`, so the table shows the speed/recall trade-off and which setting
meets the target: p50 ≤ 5 ms at batch 1 with recall@10 ≥ 0.95.

Data: `--clusters` centres ~ N(0, I); a point is a centre plus Gaussian noise whose per-axis
standard deviation falls off as a power law (most of the spread in a few dozen directions, as in
sentence embeddings), normalised to unit length. Queries are drawn the same way and are not in
the indexed set. Writes OUTPUT/memory_scale.json and OUTPUT/memory_scale.md and prints the
Markdown to stdout. FAISS runs with its default OpenMP threads.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import hashlib
import json
import platform
import resource
import shlex
import sys
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np

from common import cpu_model, fmt, md_table, usable_cores, write_json
from jiyi.memory import index as index_module
from jiyi.memory.index import DEFAULTS, VectorIndex, faiss_module

K = 10
BATCH = 64
WARMUP = 10  # batch-1 queries run (and not timed) before the timed loop
CHUNK = 50_000  # rows generated and added per call: bounds the temporaries
TARGET = {"p50_ms": 5.0, "recall": 0.95}
QUICK = {"n": 50_000, "queries": 200}
SWEEPS = {
    "hnsw": ("ef_search", (32, 64, 96, 128, 256, 512)),
    "ivf": ("nprobe", (8, 16, 32, 64, 128, 256)),
}
MB = 1024 * 1024


# --- data -------------------------------------------------------------------------------------


class ClusteredData:
    """Clustered unit vectors: centre ~ N(0, I) plus power-law-spectrum noise, normalised."""

    def __init__(self, dim: int, clusters: int, noise: float, decay: float, seed: int):
        self.dim = dim
        self.centres = np.random.default_rng([seed, 0]).standard_normal(
            (clusters, dim), dtype=np.float32
        )
        spectrum = np.arange(1, dim + 1, dtype=np.float64) ** -decay
        spectrum *= np.sqrt(dim / (spectrum**2).sum())  # total variance noise² · dim, any decay
        self.scale = (noise * spectrum).astype(np.float32)

    def draw(self, rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
        labels = rng.integers(0, len(self.centres), n)
        x = self.centres[labels] + rng.standard_normal((n, self.dim), dtype=np.float32) * self.scale
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        return x, labels

    def fill(self, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """`n` vectors and their cluster labels, drawn CHUNK rows at a time into one array."""
        rng = np.random.default_rng(seed)
        out = np.empty((n, self.dim), dtype=np.float32)
        labels = np.empty(n, dtype=np.int32)
        for start in range(0, n, CHUNK):
            end = min(n, start + CHUNK)
            out[start:end], labels[start:end] = self.draw(rng, end - start)
        return out, labels


# --- measuring --------------------------------------------------------------------------------


def proc_status_kb(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def rss_bytes() -> int:
    """The resident set size now (VmRSS), or the peak (ru_maxrss) where /proc is missing."""
    kb = proc_status_kb("VmRSS")
    return 1024 * (kb if kb is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def peak_rss_bytes() -> int:
    kb = proc_status_kb("VmHWM")
    return 1024 * (kb if kb is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def percentiles_ms(seconds: np.ndarray) -> dict[str, float]:
    p50, p99 = np.percentile(seconds * 1000, [50, 99])
    return {"p50_ms": float(p50), "p99_ms": float(p99), "mean_ms": float(seconds.mean() * 1000)}


def recall_at_k(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean share of the exact top-k that the index returned (order ignored)."""
    hits = (found[:, :, None] == truth[:, None, :]).any(axis=2).sum(axis=1)
    return float(hits.mean() / truth.shape[1])


def time_batch1(
    index: VectorIndex, queries: np.ndarray, repeats: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every query in its own `search` call, `repeats` passes: wall and calling-thread CPU
    seconds, each (repeats, Q), and the slots the first pass found."""
    for i in range(min(WARMUP, len(queries))):
        index.search(queries[i : i + 1], K)
    wall = np.empty((repeats, len(queries)))
    cpu = np.empty((repeats, len(queries)))
    found = np.empty((len(queries), K), dtype=np.int64)
    for r in range(repeats):
        for i in range(len(queries)):
            q = queries[i : i + 1]
            c0, t0 = time.thread_time(), time.perf_counter()
            _, slots = index.search(q, K)
            wall[r, i], cpu[r, i] = time.perf_counter() - t0, time.thread_time() - c0
            if r == 0:
                found[i] = slots[0]
    return wall, cpu, found


def time_batched(
    index: VectorIndex, queries: np.ndarray, repeats: int
) -> tuple[np.ndarray, np.ndarray]:
    """The queries in batches of BATCH, `repeats` passes: the seconds of every full batch
    (repeats, batches), and the slots the first pass found."""
    index.search(queries[:BATCH], K)  # warm-up
    seconds: list[list[float]] = []
    found = []
    for r in range(repeats):
        seconds.append([])
        for start in range(0, len(queries), BATCH):
            batch = queries[start : start + BATCH]
            t0 = time.perf_counter()
            _, slots = index.search(batch, K)
            elapsed = time.perf_counter() - t0
            if len(batch) == BATCH or len(queries) < BATCH:
                seconds[-1].append(elapsed)
            if r == 0:
                found.append(slots)
    return np.asarray(seconds), np.concatenate(found)


def measure_queries(
    index: VectorIndex, queries: np.ndarray, truth: np.ndarray, repeats: int
) -> dict[str, Any]:
    """Recall and latency; each query's (batch's) latency is its best of `repeats` passes, the
    least disturbed by other load on the machine."""
    b1_wall, b1_cpu, b1_found = time_batch1(index, queries, repeats)
    b64_seconds, b64_found = time_batched(index, queries, repeats)
    b1: dict[str, Any] = {
        **percentiles_ms(b1_wall.min(axis=0)),
        "first_pass": percentiles_ms(b1_wall[0]),
        "thread_cpu": percentiles_ms(b1_cpu.min(axis=0)),
    }
    b64: dict[str, Any] = {
        **percentiles_ms(b64_seconds.min(axis=0)),
        "first_pass": percentiles_ms(b64_seconds[0]),
    }
    batch = min(BATCH, len(queries))
    row = {
        "recall_at_10": recall_at_k(b1_found, truth),
        "recall_at_10_batch64": recall_at_k(b64_found, truth),
        "batch1": b1,
        "batch64": {
            **b64,
            "batch_size": batch,
            "batches_timed": len(b64_seconds),
            "per_query_p50_ms": b64["p50_ms"] / batch,
            "per_query_mean_ms": b64["mean_ms"] / batch,
        },
    }
    row["meets_target"] = (
        b1["p50_ms"] <= TARGET["p50_ms"] and row["recall_at_10"] >= TARGET["recall"]
    )
    return row


def log(msg: str, t_start: float) -> None:
    print(f"[{time.perf_counter() - t_start:8.1f}s] {msg}", file=sys.stderr, flush=True)


def build(
    kind: str, data: np.ndarray, params: dict[str, Any], t_start: float
) -> tuple[VectorIndex, dict[str, Any]]:
    """Create (and for ivf train) an index and add every row; its build and memory figures."""
    gc.collect()
    rss0 = rss_bytes()
    t0 = time.perf_counter()
    index = VectorIndex.create(
        kind, data.shape[1], train=data if kind == "ivf" else None, params=dict(params)
    )
    train_seconds = time.perf_counter() - t0
    if kind == "ivf":
        log(f"ivf: trained {index.params['nlist']} cells in {train_seconds:.1f}s", t_start)
    step = max(CHUNK, len(data) // 10)
    for start in range(0, len(data), step):
        end = min(len(data), start + step)
        index.add(data[start:end], np.arange(start, end, dtype=np.int64))
        log(f"{kind}: added {end:,}/{len(data):,} ({time.perf_counter() - t0:.1f}s)", t_start)
    build_seconds = time.perf_counter() - t0
    rss1 = rss_bytes()
    t1 = time.perf_counter()
    serialised = len(index.to_bytes())
    serialise_seconds = time.perf_counter() - t1
    gc.collect()
    info = {
        "params": {
            k: index.params[k]
            for k in {
                "flat": (),
                "hnsw": ("hnsw_m", "ef_construction"),
                "ivf": ("nlist",),
            }[kind]
        },
        "build_seconds": build_seconds,
        "train_seconds": train_seconds if kind == "ivf" else 0.0,
        "add_seconds": build_seconds - (train_seconds if kind == "ivf" else 0.0),
        "serialised_bytes": serialised,
        "serialised_bytes_per_vector": serialised / len(data),
        "serialise_seconds": serialise_seconds,
        "rss_growth_bytes": rss1 - rss0,
        "ntotal": index.ntotal,
    }
    return index, info


def bench_kind(
    kind: str,
    index: VectorIndex,
    info: dict[str, Any],
    queries: np.ndarray,
    truth: np.ndarray,
    repeats: int,
    t_start: float,
) -> dict[str, Any]:
    settings = []
    if kind == "flat":
        settings.append(
            {"setting": "exact", "is_default": True, **measure_queries(index, queries, truth, 1)}
        )
    else:
        name, sweep = SWEEPS[kind]
        default = index.params[name]
        for value in sorted({*sweep, default}):
            index.params[name] = value
            row = measure_queries(index, queries, truth, repeats)
            settings.append(
                {"setting": f"{name}={value}", name: value, "is_default": value == default, **row}
            )
            log(
                f"{kind} {name}={value}: recall@10 {row['recall_at_10']:.4f}, "
                f"b1 p50 {row['batch1']['p50_ms']:.2f} ms",
                t_start,
            )
        index.params[name] = default
    met = [s for s in settings if s["meets_target"]]
    best = min(met, key=lambda s: s["batch1"]["p50_ms"]) if met else None
    return {
        "kind": kind,
        **info,
        "settings": settings,
        "fastest_meeting_target": best and best["setting"],
    }


# --- report -----------------------------------------------------------------------------------


def render(res: dict[str, Any]) -> str:
    cfg, data = res["config"], res["data"]
    lines = []
    if cfg["quick"]:
        lines.append(
            "> **Quick smoke run, not the benchmark**: "
            f"{cfg['n']:,} vectors, {cfg['queries']} queries.\n"
        )
    lines += [
        "# Vector index at scale: flat, HNSW and IVF\n",
        f"- Command: `{res['command']}`",
        f"- Date: {res['started']}; total wall {fmt(res.get('total_seconds'), ',.0f')} s",
        f"- Machine: {res['machine']['cores']} cores, {res['machine']['cpu']}; FAISS "
        f"{res['machine']['faiss_threads']} OpenMP threads (its default). Shared machine with "
        "other work running: timings are noisy.",
        "- Versions: " + ", ".join(f"{k} {v}" for k, v in res["versions"].items()),
        index_line(res.get("index_py")),
        f"- Data: {cfg['n']:,} × {cfg['dim']}-d float32 unit vectors in {cfg['clusters']:,} "
        f"clusters (centre ~ N(0, I) + noise of RMS {cfg['noise']} per axis, power-law "
        f"spectrum decay {cfg['decay']}), seed {cfg['seed']}; {cfg['queries']:,} queries drawn "
        "the same way, not in the indexed set",
        f"- Neighbourhoods: {data['truth_in_cluster']:.0%} of the exact top-10 share the "
        f"query's cluster; mean cosine of the exact top-1 {data['truth_top1_cosine']:.3f}, "
        f"top-10th {data['truth_top10_cosine']:.3f}",
        f"- Ground truth: flat (exact) search, all queries in one batch "
        f"({data['truth_seconds']:.1f} s); recall@10 = share of the exact top-10 returned",
        f"- Target: p50 ≤ {TARGET['p50_ms']:g} ms at batch 1 with recall@10 ≥ {TARGET['recall']}",
        f"- Latency: wall time of `VectorIndex.search` (Python wrapper included), {K} nearest; "
        f"each query's (batch's) best of {cfg['repeats']} passes for hnsw and ivf, 1 pass for "
        "flat. `b1 p50 1st pass` is the first pass alone; `b1 p50 CPU` the calling thread's CPU "
        "time: where the search runs on that thread (see SMALL_BATCH above), the cost of a "
        "query without preemption by other work",
        "",
        "## Build and memory\n",
    ]
    rows = []
    for r in res["kinds"].values():
        rows.append(
            [
                r["kind"],
                ", ".join(f"{k}={v}" for k, v in r["params"].items()) or "—",
                fmt(r["build_seconds"], ",.1f"),
                fmt(r["train_seconds"], ",.1f"),
                fmt(r["serialised_bytes"] / MB, ",.0f"),
                fmt(r["serialised_bytes_per_vector"], ",.0f"),
                fmt(r["rss_growth_bytes"] / MB, ",.0f"),
            ]
        )
    lines += [
        md_table(
            [
                "index",
                "parameters",
                "build s",
                "of which train s",
                "serialised MiB",
                "bytes/vector",
                "RSS growth MiB",
            ],
            rows,
        ),
        "",
        f"## Queries (k = {K})\n",
    ]
    rows = []
    for r in res["kinds"].values():
        for s in r["settings"]:
            rows.append(
                [
                    r["kind"],
                    s["setting"]
                    + (" (default)" if s["is_default"] and r["kind"] != "flat" else ""),
                    fmt(s["recall_at_10"], ".4f"),
                    fmt(s["batch1"]["p50_ms"], ".2f"),
                    fmt(s["batch1"]["p99_ms"], ".2f"),
                    fmt(s["batch1"]["first_pass"]["p50_ms"], ".2f"),
                    fmt(s["batch1"]["thread_cpu"]["p50_ms"], ".2f"),
                    fmt(s["batch64"]["p50_ms"], ".1f"),
                    fmt(s["batch64"]["p99_ms"], ".1f"),
                    fmt(s["batch64"]["per_query_p50_ms"], ".3f"),
                    "**met**" if s["meets_target"] else "missed",
                ]
            )
    lines += [
        md_table(
            [
                "index",
                "setting",
                "recall@10",
                "b1 p50 ms",
                "b1 p99 ms",
                "b1 p50 1st pass",
                "b1 p50 CPU",
                f"b{BATCH} p50 ms/batch",
                f"b{BATCH} p99 ms/batch",
                f"b{BATCH} ms/query (p50)",
                "target",
            ],
            rows,
        ),
        "",
        "## Verdict\n",
    ]
    for r in res["kinds"].values():
        if r["kind"] == "flat":
            s = r["settings"][0]
            lines.append(
                f"- flat: exact, b1 p50 {s['batch1']['p50_ms']:.1f} ms — "
                + ("meets" if s["meets_target"] else "misses")
                + " the latency target"
            )
            continue
        default = next(s for s in r["settings"] if s["is_default"])
        best = r["fastest_meeting_target"]
        lines.append(
            f"- {r['kind']}: "
            + (f"target met, fastest at `{best}`" if best else "target not met at any setting")
            + f"; default `{default['setting']}`: recall {default['recall_at_10']:.4f}, "
            f"b1 p50 {default['batch1']['p50_ms']:.2f} ms ("
            + ("meets" if default["meets_target"] else "misses")
            + ")"
        )
    return "\n".join(lines) + "\n"


def index_line(info: dict[str, Any] | None) -> str:
    if not info:
        return "- index.py: not recorded"
    small = info.get("small_batch")
    threads = (
        f"batches under SMALL_BATCH={small} queries searched on one thread"
        if small
        else "no SMALL_BATCH: every search uses the FAISS threads"
    )
    return f"- index.py sha256 {info['sha256']}…: DEFAULTS {info['defaults']}; {threads}"


def package_version(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"


# --- main -------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=1_000_000, help="vectors indexed")
    p.add_argument("--dim", type=int, default=384)
    p.add_argument("--clusters", type=int, default=1000)
    p.add_argument("--queries", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--kinds", default="flat,hnsw,ivf", help="comma-separated: flat,hnsw,ivf")
    p.add_argument("--noise", type=float, default=2.0, help="RMS noise per axis (centre: 1)")
    p.add_argument("--decay", type=float, default=0.5, help="power-law decay of the noise")
    p.add_argument("--hnsw-m", type=int, default=DEFAULTS["hnsw_m"])
    p.add_argument("--ef-construction", type=int, default=DEFAULTS["ef_construction"])
    p.add_argument("--nlist", type=int, default=DEFAULTS["nlist"], help="0: index.py's rule")
    p.add_argument(
        "--repeats",
        type=int,
        default=3,
        help="timing passes of hnsw and ivf (flat: 1); a query's latency is its best pass",
    )
    p.add_argument("--output", type=Path, default=Path("bench/results/memory_scale"))
    p.add_argument("--quick", action="store_true", help=f"smoke run: n={QUICK['n']:,}, ...")
    args = p.parse_args(argv)
    if args.quick:
        args.n, args.queries = QUICK["n"], QUICK["queries"]
    args.kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    unknown = set(args.kinds) - {"flat", "hnsw", "ivf"}
    if unknown:
        p.error(f"--kinds: unknown {', '.join(sorted(unknown))}")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    t_start = time.perf_counter()
    faiss = faiss_module()
    json_path = args.output / "memory_scale.json"
    res: dict[str, Any] = {
        "command": shlex.join([Path(sys.executable).name, *sys.argv]),
        "started": dt.datetime.now().isoformat(timespec="seconds"),
        "config": {
            k: getattr(args, k)
            for k in (
                "n",
                "dim",
                "clusters",
                "queries",
                "seed",
                "noise",
                "decay",
                "repeats",
                "quick",
            )
        }
        | {"kinds": args.kinds, "k": K, "batch": BATCH, "target": TARGET},
        "machine": {
            "cores": usable_cores(),
            "cpu": cpu_model(),
            "faiss_threads": faiss.omp_get_max_threads(),
            "platform": platform.platform(),
        },
        "versions": {
            "python": platform.python_version(),
            "numpy": np.__version__,
            "faiss": faiss.__version__,
            "jiyi": package_version("jiyi"),
        },
        "index_py": {  # the code measured: index.py is still changing
            "sha256": hashlib.sha256(Path(index_module.__file__).read_bytes()).hexdigest()[:16],
            "defaults": dict(DEFAULTS),
            "small_batch": getattr(index_module, "SMALL_BATCH", None),
        },
        "kinds": {},
    }
    params = {"hnsw_m": args.hnsw_m, "ef_construction": args.ef_construction, "nlist": args.nlist}

    gen = ClusteredData(args.dim, args.clusters, args.noise, args.decay, args.seed)
    t0 = time.perf_counter()
    data, labels = gen.fill(args.n, seed=args.seed + 1)
    queries, query_labels = gen.fill(args.queries, seed=args.seed + 2)
    log(f"data: {args.n:,} + {args.queries:,} vectors in {time.perf_counter() - t0:.1f}s", t_start)
    res["data"] = {"generate_seconds": time.perf_counter() - t0, "rss_bytes": rss_bytes()}

    # Flat first: it is the ground truth (one batch, BLAS), then benchmarked if asked for.
    flat, flat_info = build("flat", data, params, t_start)
    t0 = time.perf_counter()
    truth_scores, truth = flat.search(queries, K)
    res["data"] |= {
        "truth_seconds": time.perf_counter() - t0,
        "truth_in_cluster": float((labels[truth] == query_labels[:, None]).mean()),
        "truth_top1_cosine": float(truth_scores[:, 0].mean()),
        "truth_top10_cosine": float(truth_scores[:, -1].mean()),
    }
    log(
        f"ground truth in {res['data']['truth_seconds']:.1f}s; "
        f"{res['data']['truth_in_cluster']:.0%} of the exact top-{K} in the query's cluster",
        t_start,
    )
    if "flat" in args.kinds:
        res["kinds"]["flat"] = bench_kind("flat", flat, flat_info, queries, truth, 1, t_start)
        write_json(json_path, res)
    del flat
    gc.collect()

    for kind in ("hnsw", "ivf"):
        if kind not in args.kinds:
            continue
        index, info = build(kind, data, params, t_start)
        log(f"{kind}: built in {info['build_seconds']:.1f}s", t_start)
        res["kinds"][kind] = bench_kind(kind, index, info, queries, truth, args.repeats, t_start)
        write_json(json_path, res)
        del index
        gc.collect()

    res["peak_rss_bytes"] = peak_rss_bytes()
    res["total_seconds"] = time.perf_counter() - t_start
    write_json(json_path, res)
    md = render(res)
    (args.output / "memory_scale.md").write_text(md, encoding="utf-8")
    print(md, end="")


def render_section(folder: Path) -> str:
    """This benchmark's section of RESULTS.md: FOLDER/memory_scale.md one heading level down, and
    a note when index.py's defaults changed since ("" when absent)."""
    scale = folder / "memory_scale.md"
    if not scale.is_file():
        return ""
    body = [
        ("##" + line if line.startswith("#") else line)
        for line in scale.read_text().splitlines()
        if not line.startswith("# ")  # its title: the section heading replaces it
    ]
    lines = ["## Memory at scale (bench/bench_memory_scale.py)\n", *body, ""]
    return "\n".join(lines + defaults_note(folder / "memory_scale.json"))


def defaults_note(path: Path) -> list[str]:
    """Say so when index.py's defaults changed after the scale run (its table marks the old)."""
    if not path.is_file():
        return []
    used = json.loads(path.read_text()).get("index_py", {}).get("defaults", {})
    changed = {k: (v, DEFAULTS.get(k)) for k, v in used.items() if DEFAULTS.get(k) != v}
    if not changed:
        return []
    what = ", ".join(f"{k} {old} -> {new}" for k, (old, new) in changed.items())
    return [
        f"Defaults changed after this run, from its results: {what} (nprobe 0 = nlist / 32, "
        "and IVF now makes 4·sqrt(N) cells where this run made sqrt(N), the nlist=1000 above). "
        "The rows marked (default) are the old defaults; the new HNSW default is the "
        "ef_search=256 row.\n"
    ]


if __name__ == "__main__":
    main()
