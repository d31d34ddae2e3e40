"""Sharded on-disk IVF-PQ (`jiyi memory build --index ivfpq`) against a flat index held in RAM.

    .venv/bin/python bench/bench_ivfpq.py                        # 1,000,000 vectors
    .venv/bin/python bench/bench_ivfpq.py --quick --output /tmp/ivfpq-quick
    .venv/bin/python bench/bench_ivfpq.py --n 10000000 --nlist 4096 --only assign  # add one part

Worker processes, each measured on its own (peak RSS = the process's VmHWM):

- `sharded`: the build path of an ivfpq memory. Pass 1 reads every shard and keeps a sample
  (the rows the coarse quantizer and PQ train on); pass 2 draws each shard again, appends it to
  vectors.npy with plain writes (as the memory's row store keeps them) and encodes it into its
  own index file (`jiyi.memory.ondisk.IvfpqWriter.add_shard`); then the shards' inverted lists
  are merged into one on-disk index.ivfdata. Never more than one shard in memory.
- `query`: a fresh process opens that index (lists mmap'd read-only, vectors.npy mmap'd for
  the exact re-scoring), computes exact top-10 of held-out queries by streaming the vectors,
  tunes nprobe to recall@10 >= 0.95 (`tune_nprobe`) and times batch-1 queries at that nprobe.
- `flat`: all vectors in one array and a FAISS flat index in RAM (the `flat` memory index):
  build time, peak RSS, batch-1 latency of exact search. Skipped when the vectors would take
  more than half the machine's RAM (10,000,000 × 384 floats are 14.3 GiB): the 1M run is the
  in-RAM comparison then.
- `assign`: the coarse assignment alone (nearest of nlist centroids, flat) per vector, at the
  run's nlist and at the 1B estimate's, for the estimate below.

The report ends with a paper estimate of a 1,000,000,000-vector build on N machines like this
one, scaled from the measured per-shard costs (`estimate`).

Data: the clustered 384-d unit vectors of bench_memory_scale.py (1,000 clusters, power-law
noise), drawn shard by shard from per-shard seeds, so every worker sees the same vectors.
Queries are drawn the same way and are not in the indexed set. Writes OUTPUT/ivfpq.json and
OUTPUT/ivfpq.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench_memory_scale import ClusteredData, peak_rss_bytes, rss_bytes
from common import cpu_model, fmt, usable_cores, write_json

DIM, CLUSTERS, NOISE, DECAY, SEED = 384, 1000, 2.0, 0.5, 0
K = 10
MB = 1024 * 1024
QUICK = {"n": 100_000, "shard_rows": 20_000, "nlist": 256, "queries": 300}


def shard(i: int, rows: int, n: int) -> np.ndarray:
    """Shard i of the data set: rows [i·rows, min(n, (i+1)·rows)), from its own seed."""
    data = ClusteredData(DIM, CLUSTERS, NOISE, DECAY, SEED)
    count = min(rows, n - i * rows)
    return data.draw(np.random.default_rng([SEED, 10, i]), count)[0]


def queries(q: int) -> np.ndarray:
    return ClusteredData(DIM, CLUSTERS, NOISE, DECAY, SEED).draw(
        np.random.default_rng([SEED, 2]), q
    )[0]


def n_shards(args: argparse.Namespace) -> int:
    return -(-args.n // args.shard_rows)


# --- workers ------------------------------------------------------------------------------------


def worker_sharded(args: argparse.Namespace) -> dict[str, Any]:
    from jiyi.memory.ondisk import IvfpqWriter, training_rows

    folder = args.output / "index"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    rss0 = rss_bytes()
    t0 = time.perf_counter()
    writer = IvfpqWriter(folder, final=folder, dim=DIM, n_rows=args.n, params={"nlist": args.nlist})
    p = writer.params
    # 1. a sample: the same share of every shard (one shard in memory at a time)
    want = training_rows(p, args.n)
    rng = np.random.default_rng([SEED, 3])
    parts = []
    for i in range(n_shards(args)):
        x = shard(i, args.shard_rows, args.n)
        take = -(-want * len(x) // args.n)
        parts.append(x[np.sort(rng.choice(len(x), size=min(take, len(x)), replace=False))])
    sample = np.concatenate(parts)
    t_sample = time.perf_counter() - t0
    writer.train(sample)
    t_train = time.perf_counter() - t0 - t_sample
    t_coarse = coarse_kmeans_seconds(sample, p["nlist"])  # for the estimate; not in the total
    del sample, parts
    t0 += t_coarse
    # 2. each shard: appended to vectors.npy, encoded into its own index file
    encode = []
    with open(args.output / "vectors.npy", "wb") as f:
        np.lib.format.write_array_header_1_0(
            f, {"descr": "<f4", "fortran_order": False, "shape": (args.n, DIM)}
        )
        for i in range(n_shards(args)):
            x = shard(i, args.shard_rows, args.n)
            f.write(x.tobytes())
            ts = time.perf_counter()
            start = i * args.shard_rows
            writer.add_shard(x, np.arange(start, start + len(x)))
            encode.append(time.perf_counter() - ts)
    t_merge0 = time.perf_counter()
    ntotal = writer.merge()
    t_merge = time.perf_counter() - t_merge0
    return {
        "params": {k: p[k] for k in ("nlist", "pq_m", "pq_bits", "refine", "shard_rows")}
        | {"shard_rows": args.shard_rows},
        "ntotal": ntotal,
        "train_rows": want,
        "seconds": {
            "total": time.perf_counter() - t0,
            "sample_pass": t_sample,
            "train": t_train,
            "coarse_kmeans_alone": t_coarse,
            "encode_per_shard_mean": float(np.mean(encode)),
            "encode_total": float(np.sum(encode)),
            "merge": t_merge,
        },
        "rss_start_bytes": rss0,
        "peak_rss_bytes": peak_rss_bytes(),
        "ivfdata_bytes": (folder / "index.ivfdata").stat().st_size,
        "vectors_bytes": (args.output / "vectors.npy").stat().st_size,
    }


def coarse_kmeans_seconds(sample: np.ndarray, nlist: int) -> float:
    """Seconds of the coarse quantizer's k-means alone (FAISS's IVF settings: 10 iterations, at
    most 64 points a cell), to split the training time into the part that grows with nlist
    and the PQ codebooks' part, which does not."""
    import faiss

    t = time.perf_counter()
    faiss.Kmeans(DIM, nlist, niter=10, max_points_per_centroid=64, spherical=True).train(sample)
    return time.perf_counter() - t


def time_b1(search: Any, q: np.ndarray) -> dict[str, float]:
    for i in range(min(10, len(q))):  # warm-up, untimed
        search(q[i : i + 1])
    wall = []
    for i in range(len(q)):
        t = time.perf_counter()
        search(q[i : i + 1])
        wall.append(time.perf_counter() - t)
    p50, p99 = np.percentile(np.asarray(wall) * 1000, [50, 99])
    return {"p50_ms": float(p50), "p99_ms": float(p99)}


def worker_query(args: argparse.Namespace) -> dict[str, Any]:
    from jiyi.memory.ondisk import (
        OnDiskIndex,
        exact_neighbours,
        recall_at,
        resolve_params,
        tune_nprobe,
    )

    rss0 = rss_bytes()
    params = resolve_params({"nlist": args.nlist}, args.n, DIM)
    t0 = time.perf_counter()
    index = OnDiskIndex.open(args.output / "index", DIM, params)
    vectors = np.load(args.output / "vectors.npy", mmap_mode="r")  # (N, D), slot = row
    index.vectors_of = lambda slots: np.asarray(vectors[slots])
    t_open = time.perf_counter() - t0
    rss_open = rss_bytes()
    q = queries(args.queries)
    t = time.perf_counter()
    stream = (
        (
            np.asarray(vectors[s : s + args.shard_rows]),
            np.arange(s, min(s + args.shard_rows, args.n)),
        )
        for s in range(0, args.n, args.shard_rows)
    )
    truth = exact_neighbours(q, stream, K)
    t_truth = time.perf_counter() - t
    out: dict[str, Any] = {"open_seconds": t_open, "truth_seconds": t_truth, "targets": {}}
    for target in (0.90, 0.95):
        t = time.perf_counter()
        tuned = tune_nprobe(index, q, truth, target=target)
        tuned["tune_seconds"] = time.perf_counter() - t
        index.params["nprobe"] = tuned["nprobe"]
        tuned["batch1"] = time_b1(lambda x: index.search(x, K), q)
        out["targets"][str(target)] = tuned
    no_refine = OnDiskIndex.open(
        args.output / "index", DIM, {**params, "nprobe": index.params["nprobe"]}
    )
    _, found = no_refine.search(q, K)  # PQ scores alone, no re-scoring
    out["recall_without_rescoring"] = recall_at(found, truth)
    out["rss_after_open_bytes"] = rss_open - rss0
    out["peak_rss_bytes"] = peak_rss_bytes()
    return out


def worker_flat(args: argparse.Namespace) -> dict[str, Any]:
    from jiyi.memory.index import VectorIndex

    rss0 = rss_bytes()
    t0 = time.perf_counter()
    x = np.empty((args.n, DIM), dtype=np.float32)
    for i in range(n_shards(args)):
        part = shard(i, args.shard_rows, args.n)
        x[i * args.shard_rows : i * args.shard_rows + len(part)] = part
    t_data = time.perf_counter() - t0
    index = VectorIndex.create("flat", DIM)
    index.add(x, np.arange(args.n))
    t_build = time.perf_counter() - t0 - t_data
    q = queries(min(args.queries, 100))  # exact search is slow: fewer timed queries
    return {
        "data_seconds": t_data,
        "build_seconds": t_build,
        "batch1": time_b1(lambda v: index.search(v, K), q),
        "rss_start_bytes": rss0,
        "peak_rss_bytes": peak_rss_bytes(),
    }


def worker_assign(args: argparse.Namespace) -> dict[str, Any]:
    """Seconds a vector of the coarse assignment (a flat inner-product search for the nearest
    of nlist centroids, the part of encoding that grows with nlist) at this run's nlist and at
    the 1,000,000,000-vector estimate's, on 20,000 vectors and random unit centroids."""
    import faiss

    x = shard(0, 20_000, 20_000)
    out = {}
    for nlist in sorted({args.nlist, billion_nlist()}):
        centroids = ClusteredData(DIM, CLUSTERS, NOISE, DECAY, SEED + 1).draw(
            np.random.default_rng([SEED, 4]), nlist
        )[0]
        index = faiss.IndexFlatIP(DIM)
        index.add(np.ascontiguousarray(centroids, dtype=np.float32))
        t = time.perf_counter()
        index.search(x, 1)
        out[str(nlist)] = (time.perf_counter() - t) / len(x)
    return {"seconds_per_vector": out}


WORKERS = {
    "sharded": worker_sharded,
    "query": worker_query,
    "flat": worker_flat,
    "assign": worker_assign,
}


def flat_fits(n: int) -> bool:
    """Whether the flat arm's (n, DIM) float32 array takes at most half of this machine's RAM."""
    import os

    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return n * DIM * 4 <= ram // 2


BILLION = 1_000_000_000


def billion_nlist() -> int:
    """nlist at 1,000,000,000 vectors: 4·sqrt(N) (jiyi's default), capped at 65,536 cells, as
    far as a flat coarse quantizer is taken here (more cells want an HNSW coarse quantizer,
    which jiyi does not build)."""
    return min(65_536, round(4 * BILLION**0.5))


def estimate(res: dict[str, Any], machines: tuple[int, ...] = (1, 10, 100)) -> list[str]:
    """Markdown: a 1,000,000,000-vector build scaled from this run's measured costs.

    Encoding and writing the vectors scale with the rows and split across machines (each
    machine encodes its own shards, as the Ray workers do); the k-means training of the
    coarse quantizer runs once and grows with nlist × its sample (64 points a cell), i.e.
    with nlist² (timed alone in the build worker), the PQ codebooks' training does not grow;
    the merge is one sequential pass over the codes. Encoding a vector at 1B's nlist
    (`billion_nlist`) costs this run's, less the coarse assignment at this run's nlist, plus
    the assignment at 1B's (both timed by the `assign` worker)."""
    s, n = res["sharded"], res["n"]
    sec, p = s["seconds"], s["params"]
    per_row = (sec["total"] - sec["train"] - sec["merge"]) / n  # both passes over the vectors
    nlist_b = billion_nlist()
    assign = res.get("assign", {}).get("seconds_per_vector", {})
    if str(p["nlist"]) in assign and str(nlist_b) in assign:
        per_row += assign[str(nlist_b)] - assign[str(p["nlist"])]
    coarse = min(sec.get("coarse_kmeans_alone", sec["train"]), sec["train"])  # older runs: all
    train_b = sec["train"] - coarse + coarse * (nlist_b / p["nlist"]) ** 2
    merge_b = sec["merge"] * BILLION / n
    codes = s["ivfdata_bytes"] / n  # bytes a vector in the on-disk lists (codes + ids)
    vec = s["vectors_bytes"] / n
    lines = [
        f"Paper estimate, 1,000,000,000 vectors, from this run's costs: encoding "
        f"{per_row * 1e6:.1f} µs a vector on this machine at nlist {nlist_b:,} (both passes: "
        f"the sample, then writing and encoding"
        + (
            f"; this run's {(sec['total'] - sec['train'] - sec['merge']) / n * 1e6:.1f} µs with "
            f"its coarse assignment, {assign[str(p['nlist'])] * 1e6:.1f} µs, replaced by 1B's, "
            f"{assign[str(nlist_b)] * 1e6:.1f} µs"
            if str(nlist_b) in assign
            else "; the coarse assignment not re-timed at 1B's nlist"
        )
        + f"; {res['machine']}); k-means at nlist {nlist_b:,} ≈ {train_b / 3600:,.1f} h on one "
        f"machine (this run's coarse k-means, {fmt(coarse, '.0f')} s at nlist {p['nlist']:,}, × "
        f"(nlist ratio)², plus its PQ training, {fmt(sec['train'] - coarse, '.0f')} s; a GPU or a "
        "two-level quantizer cuts the k-means, neither measured); merge "
        f"≈ {merge_b / 3600:,.1f} h (one pass); on disk {codes * BILLION / 2**30:,.0f} GiB of "
        f"lists + {vec * BILLION / 2**40:,.2f} TiB of vectors (the exact re-scoring reads "
        "them; without it, recall is the PQ-only figure above).",
        "",
        "| machines (at this run's threads each) | encode h (wall) | train h | merge h | total h |",
        "| ---: | ---: | ---: | ---: | ---: |",
    ]
    for m in machines:
        enc = per_row * BILLION / m / 3600
        lines.append(
            f"| {m} | {enc:,.1f} | {train_b / 3600:,.1f} | {merge_b / 3600:,.1f} | "
            f"{enc + (train_b + merge_b) / 3600:,.1f} |"
        )
    lines.append("")
    return lines


# --- the parent ---------------------------------------------------------------------------------


def run_worker(name: str, args: argparse.Namespace) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--worker", name, *sys.argv[1:]]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"worker {name} failed:\n{r.stderr[-4000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def render(res: dict[str, Any]) -> str:
    s, q, f = res["sharded"], res["query"], res.get("flat")
    n, p = res["n"], s["params"]
    lines = [
        "# Sharded on-disk IVF-PQ memories\n",
        f"- Command: `{res['command']}`",
        f"- Date: {res['date']}; machine: {res['machine']}",
        f"- Data: {n:,} × {DIM}-d clustered unit vectors (bench_memory_scale.py's generator), "
        f"drawn in {res['shards']} shards of {p['shard_rows']:,}; {res['queries']:,} held-out "
        "queries drawn the same way",
        f"- Index: nlist {p['nlist']}, PQ {p['pq_m']} × {p['pq_bits']} bits "
        f"({p['pq_m']} bytes a vector), {s['train_rows']:,} training rows, candidates "
        f"re-scored exactly: refine {p['refine']} × k from vectors.npy (mmap)",
        "",
        "| build | seconds | peak RSS MiB | on disk MiB |",
        "| --- | ---: | ---: | ---: |",
        f"| sharded ivfpq (sample pass {fmt(s['seconds']['sample_pass'], '.1f')} s, train "
        f"{fmt(s['seconds']['train'], '.1f')} s, encode {fmt(s['seconds']['encode_per_shard_mean'], '.2f')}"
        f" s/shard, merge {fmt(s['seconds']['merge'], '.1f')} s) | {fmt(s['seconds']['total'], '.1f')} | "
        f"{s['peak_rss_bytes'] / MB:,.0f} | {s['ivfdata_bytes'] / MB:,.0f} lists + "
        f"{s['vectors_bytes'] / MB:,.0f} vectors |",
        f"| flat in RAM (data {fmt(f['data_seconds'], '.1f')} s + add) | "
        f"{fmt(f['data_seconds'] + f['build_seconds'], '.1f')} | {f['peak_rss_bytes'] / MB:,.0f} | "
        "— |"
        if f
        else f"| flat in RAM: not run ({n * DIM * 4 / 2**30:,.1f} GiB of vectors) | — | — | — |",
        "",
        "| search | nprobe | recall@10 | batch-1 p50 ms | p99 ms |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for target, t in q["targets"].items():
        curve = ", ".join(f"{k}: {v}" for k, v in t["curve"].items())
        lines.append(
            f"| ivfpq on disk, tuned to recall ≥ {target} (curve {curve}) | {t['nprobe']} | "
            f"{t['recall']:.4f} | {fmt(t['batch1']['p50_ms'], '.2f')} | "
            f"{fmt(t['batch1']['p99_ms'], '.2f')} |"
        )
    if f:
        lines.append(
            f"| flat in RAM (exact) | — | 1.0000 | {fmt(f['batch1']['p50_ms'], '.2f')} | "
            f"{fmt(f['batch1']['p99_ms'], '.2f')} |"
        )
    lines += [
        "",
        f"Without the exact re-scoring (PQ scores alone, same nprobe): recall@10 "
        f"{q['recall_without_rescoring']:.4f}. Opening the on-disk index took "
        f"{fmt(q['open_seconds'], '.2f')} s and {q['rss_after_open_bytes'] / MB:,.0f} MiB of RSS; "
        f"exact ground truth by streaming the vectors {fmt(q['truth_seconds'], '.1f')} s.",
        "",
        *estimate(res),
    ]
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=1_000_000)
    p.add_argument("--shard-rows", type=int, default=100_000)
    p.add_argument("--nlist", type=int, default=1024)
    p.add_argument("--queries", type=int, default=1000)
    p.add_argument("--quick", action="store_true", help=f"{QUICK}")
    p.add_argument("--output", type=Path, default=Path("bench/results/ivfpq"))
    p.add_argument("--worker", choices=sorted(WORKERS))
    p.add_argument(
        "--only",
        nargs="+",
        choices=sorted(WORKERS),
        help="run these workers alone, keeping the other results of OUTPUT/ivfpq.json",
    )
    args = p.parse_args(argv)
    if args.quick:
        for k, v in QUICK.items():
            setattr(args, k, v)
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    args.output.mkdir(parents=True, exist_ok=True)
    if args.worker:
        print(json.dumps(WORKERS[args.worker](args)))
        return
    res: dict[str, Any] = {
        "command": shlex.join(["python", "bench/bench_ivfpq.py", *sys.argv[1:]]),
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": f"{usable_cores()} cores, {cpu_model()}",
        "n": args.n,
        "shards": n_shards(args),
        "queries": args.queries,
    }
    previous = args.output / "ivfpq.json"
    if args.only and previous.is_file():  # add to (or redo part of) an earlier run's results
        res = {**json.loads(previous.read_text(encoding="utf-8")), "n": args.n}
    for name in args.only or ("sharded", "query", "flat", "assign"):
        if name == "flat" and not flat_fits(args.n):
            print("[flat] skipped: the vectors would take over half the RAM", file=sys.stderr)
            continue
        print(f"[{name}] ...", file=sys.stderr, flush=True)
        res[name] = run_worker(name, args)
        write_json(args.output / "ivfpq.json", res)
    md = render(res)
    (args.output / "ivfpq.md").write_text(md, encoding="utf-8")
    print(md)


def render_section(folder: Path) -> str:
    """This benchmark's section of RESULTS.md ("" when it has not run in FOLDER)."""
    path = folder / "ivfpq.md"
    if not path.is_file():
        return ""
    body = [("##" + x if x.startswith("#") else x) for x in path.read_text().splitlines()[1:]]
    return "\n".join(["## Sharded on-disk IVF-PQ (bench/bench_ivfpq.py)\n", *body, ""])


if __name__ == "__main__":
    main()
