"""`--index ivfpq --engine ray` against a local ivfpq build of the same vectors: the index shards
encoded on Ray workers (`jiyi.scale.memory.encode_on_ray`) or in the driver.

    OMP_NUM_THREADS=1 .venv/bin/python bench/bench_scale_ivfpq.py          # 100,000 vectors

Each arm runs in a process of its own and writes a new memory with
`jiyi.memory.sharded.build_from_shards` (MiniLM's manifest, 384-d): the driver streams the
vector shards into vectors.npy, trains IVF-PQ on a sample, encodes the --shard-rows ranges
(`local`: in the driver; `ray`: on --workers Ray actors of 1 CPU each, Ray started inside the
arm) and merges them, then tunes nprobe. Measured per arm: wall seconds (Ray start-up
apart), the driver's peak RSS (VmHWM; Ray's worker processes are not counted) and the digests
of trained.faiss and index.ivfdata, which must be equal. The vectors are bench_ivfpq.py's
clustered 384-d vectors, drawn shard by shard. Writes OUTPUT/scale_ivfpq.json and .md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench_ivfpq import shard
from bench_memory_scale import peak_rss_bytes
from common import cpu_model, read_json, usable_cores, write_json

MB = 1024 * 1024


def run_arm(args: argparse.Namespace) -> dict[str, Any]:
    from jiyi.memory.knn import Memory
    from jiyi.memory.ondisk import encode_shards_here
    from jiyi.memory.sharded import build_from_shards
    from jiyi.scale.jobs import ray_session
    from jiyi.scale.memory import encode_on_ray

    out = args.output / f"mem-{args.worker}"
    shutil.rmtree(out, ignore_errors=True)
    n_shards = -(-args.n // args.vector_rows)

    encode_seconds = [0.0]

    def timed(encode: Any) -> Any:
        def run(*args: Any) -> None:
            started = time.perf_counter()
            encode(*args)
            encode_seconds[0] += time.perf_counter() - started

        return run

    def build(encode: Any) -> None:
        build_from_shards(
            out,
            "minilm",
            [f"row {i}" for i in range(args.n)],
            shards=lambda: (shard(i, args.vector_rows, args.n) for i in range(n_shards)),
            index_params={"nlist": args.nlist, "shard_rows": args.shard_rows},
            encode=timed(encode),
            on_progress=lambda message: None,
        )

    startup, started = 0.0, time.perf_counter()
    if args.worker == "ray":
        ray_args = argparse.Namespace(workers=args.workers, cpus_per_worker=1.0)
        with ray_session(None, args.workers) as startup:
            started = time.perf_counter()
            build(encode_on_ray(ray_args))
    else:
        build(encode_shards_here)
    seconds = time.perf_counter() - started
    snap = next(out.glob("snap-*"))
    params = Memory.open(out).manifest["index_params"]
    return {
        "arm": args.worker,
        "build_seconds": round(seconds, 2),
        "encode_seconds": round(encode_seconds[0], 2),
        "ray_startup_seconds": round(startup, 2),
        "driver_peak_rss_mb": round(peak_rss_bytes() / MB, 1),
        "nprobe": params["nprobe"],
        "recall": params["recall"],
        "digests": {
            name: hashlib.sha256((snap / name).read_bytes()).hexdigest()[:16]
            for name in ("trained.faiss", "index.ivfdata", "vectors.npy")
        },
    }


def render(res: dict[str, Any]) -> str:
    c = res["config"]
    lines = [
        f"{c['n']:,} clustered 384-d vectors (vector shards of {c['vector_rows']:,}), nlist "
        f"{c['nlist']}, pq_m 96, index shards of {c['shard_rows']:,}; Ray: {c['workers']} "
        f"workers of 1 CPU; {c['cpu']}, {c['cores']} cores, "
        f"OMP_NUM_THREADS={c['omp']}; {c['date']}.",
        "",
        "| arm | build s | of which encoding s | Ray start-up s | driver peak RSS MiB | nprobe "
        "| recall@10 |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in res["arms"]:
        lines.append(
            f"| {r['arm']} | {r['build_seconds']:.1f} | {r['encode_seconds']:.1f} | "
            f"{r['ray_startup_seconds']:.1f} | "
            f"{r['driver_peak_rss_mb']:.0f} | {r['nprobe']} | {r['recall']:.3f} |"
        )
    same = len({json.dumps(r["digests"], sort_keys=True) for r in res["arms"]}) == 1
    lines += [
        "",
        "trained.faiss, index.ivfdata and vectors.npy: "
        + ("the same bytes in both arms." if same else "DIFFER between the arms."),
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=100_000)
    p.add_argument("--vector-rows", type=int, default=10_000, help="rows a vector shard")
    p.add_argument("--shard-rows", type=int, default=25_000, help="rows an index shard")
    p.add_argument("--nlist", type=int, default=256)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--output", type=Path, default=Path("bench/results/scale_ivfpq"))
    p.add_argument("--worker", choices=("local", "ray"))
    args = p.parse_args(argv)
    args.output.mkdir(parents=True, exist_ok=True)
    if args.worker:
        print(json.dumps(run_arm(args)))
        return
    arms = []
    for arm in ("local", "ray"):
        cmd = [sys.executable, __file__, *(argv or sys.argv[1:]), "--worker", arm]
        done = subprocess.run(cmd, check=True, capture_output=True, text=True)
        arms.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(arms[-1], file=sys.stderr)
    config = {
        **{k: getattr(args, k) for k in ("n", "vector_rows", "shard_rows", "nlist", "workers")},
        "cpu": cpu_model(),
        "cores": usable_cores(),
        "omp": os.environ.get("OMP_NUM_THREADS", "unset"),
        "date": dt.date.today().isoformat(),
    }
    res = {"config": config, "arms": arms}
    write_json(args.output / "scale_ivfpq.json", res)
    (args.output / "scale_ivfpq.md").write_text(render(res), encoding="utf-8")
    print(render(res))


def render_section(folder: Path) -> str:
    """This benchmark's section of RESULTS.md ("" when it has not run in FOLDER)."""
    res = read_json(folder / "scale_ivfpq.json")
    if res is None:
        return ""
    title = "## `--index ivfpq --engine ray` against a local build (bench/bench_scale_ivfpq.py)"
    return f"{title}\n\n{render(res)}"


if __name__ == "__main__":
    main()
