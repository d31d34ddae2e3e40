"""`--engine ray` for `jiyi embed`, `jiyi predict` and `jiyi memory build`: plan the shards, start
(or reach) Ray, run the shards not yet written on `ShardWorker` actors, finish the manifest.

    jiyi embed minilm --input texts/ --output vectors/ --engine ray --workers 2

1. plan: the input files' rows, cut into shards (`jiyi.scale.shards`); every input error is
   raised here, before Ray starts.
2. manifest: --output/manifest.json records the job (kind, settings, model files, inputs, shards).
   The same command again finds it, skips the shards already written and runs the rest; another
   job's manifest there is refused.
3. run: `ray.data.from_items(shards).map_batches(ShardWorker, compute=ActorPoolStrategy(size=N))`,
   one shard per call; each actor loads the model once and writes whole shards.
4. finish: the manifest gets "complete": true and the timings.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from jiyi.errors import JiyiError
from jiyi.scale.shards import (
    FORMAT,
    MANIFEST,
    finished,
    input_files,
    plan_shards,
    read_manifest,
    read_output,
    same_job,
)

# environment the workers need as the driver has it (offline mode, caches, jiyi's own switches)
FORWARDED_ENV = ("HF_", "TRANSFORMERS_", "JIYI_")
# rows per shard of a memory's vectors (`jiyi memory build` has no Ray --shard-rows: its
# --shard-rows is the ivfpq index's); jiyi.scale.memory runs `jiyi memory build --engine ray`
MEMORY_SHARD_ROWS = 10000


@contextmanager
def ray_session(address: str | None, cpus: float) -> Iterator[float]:
    """Use the Ray this process already has, else reach `address`, else start a local Ray with
    `cpus` CPUs; yields the seconds start-up took. A Ray it started is shut down at the end."""
    import ray
    import ray.data

    started = time.perf_counter()
    owned = not ray.is_initialized()
    if owned:
        env = {k: v for k, v in os.environ.items() if k.startswith(FORWARDED_ENV)}
        quiet = dict(logging_level=logging.ERROR, log_to_driver=False)
        runtime_env = {"env_vars": env} if env else None
        try:
            if address:
                ray.init(address=address, runtime_env=runtime_env, **quiet)
            else:
                ray.init(
                    num_cpus=max(1, round(cpus)),
                    include_dashboard=False,
                    runtime_env=runtime_env,
                    # Ray starts its workers at nice +15 by default (idle helpers); ours do the
                    # work, and at +15 a busy machine starves them: run them at the caller's
                    _system_config={"worker_niceness": 0},
                    **quiet,
                )
        except (ConnectionError, ValueError, RuntimeError) as e:
            where = f"--address {address}" if address else "--engine ray"
            raise JiyiError(f"{where}: could not start or reach Ray ({e}).") from None
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.print_on_execution_start = False
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    try:
        yield time.perf_counter() - started
    finally:
        if owned:
            ray.shutdown()


def user_error(exc: BaseException) -> JiyiError | None:
    """The JiyiError a worker raised, found in the exceptions Ray wraps it in (None: none)."""
    seen: set[int] = set()
    stack: list[BaseException | None] = [exc]
    while stack:
        e = stack.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        cause = getattr(e, "cause", None)  # ray.exceptions.RayTaskError keeps the original
        if isinstance(cause, JiyiError):
            return JiyiError(str(cause))
        if type(e) is JiyiError:
            return e
        stack += [e.__cause__, e.__context__, cause if isinstance(cause, BaseException) else None]
    return None


def model_identity(path: str) -> dict[str, list[int]]:
    """{file: [bytes, mtime_ns]} of the files that decide a model's outputs: a changed model
    makes a re-run another job, not a resume."""
    folder = Path(path)
    if not folder.is_dir():
        return {}
    names = ("config.json", "jiyi.json", "tokenizer.json", "vocab.txt", "vocab.json")
    files = [*sorted(folder.glob("*.safetensors")), *(folder / n for n in names)]
    return {f.name: [f.stat().st_size, f.stat().st_mtime_ns] for f in files if f.is_file()}


def run_job(
    job: dict[str, Any], input_spec: str, args: argparse.Namespace, *, restart_other: bool = False
) -> dict[str, Any]:
    """Plan, resume and run one job; `job` holds kind, settings, output, text_column, shard_rows
    (and, for the manifest only, "extra"). `restart_other` clears an output folder that holds
    another job instead of refusing it (a folder jiyi owns). Returns the summary."""
    from jiyi.io import atomic_write_json, output_folder

    out = output_folder(job["output"])
    plan = plan_shards(input_files(input_spec), job["text_column"], job["shard_rows"])  # 1.
    manifest = {
        "format": FORMAT,
        "kind": job["kind"],
        "settings": job["settings"],
        "text_column": job["text_column"],
        "shard_rows": job["shard_rows"],
        "inputs": plan["inputs"],
        "rows": plan["rows"],
        "ids": plan["ids"],
        **job.get("extra", {}),
        "shards": plan["shards"],
        "complete": False,
    }
    old = read_manifest(out)  # 2.
    if old is None and out.is_dir() and any(out.iterdir()):
        raise JiyiError(
            f"--output {out}: the folder is not empty and holds no {MANIFEST} of a jiyi job; "
            "choose a new or empty folder."
        )
    if old is not None and (differ := same_job(old, manifest)):
        if not restart_other:
            raise JiyiError(
                f"--output {out}: holds the shards of another job ({', '.join(differ)} differ); "
                "choose another folder, or remove it to start over."
            )
        shutil.rmtree(out)
        old = None
    out.mkdir(parents=True, exist_ok=True)
    done = {s["name"] for s in plan["shards"] if old is not None and finished(out, s)}
    pending = [s for s in plan["shards"] if s["name"] not in done]
    atomic_write_json(out / MANIFEST, manifest)
    startup = elapsed = 0.0
    if pending:
        started = time.perf_counter()
        with ray_session(args.address, args.workers * args.cpus_per_worker) as startup:
            _run_shards(job, plan, pending, args)  # 3.
        elapsed = time.perf_counter() - started - startup
    manifest |= {  # 4.
        "complete": True,
        "engine": {k: getattr(args, k) for k in ("workers", "cpus_per_worker",
                                                 "num_gpus_per_worker", "address")},
        "timing": {"startup_seconds": round(startup, 3), "run_seconds": round(elapsed, 3)},
    }  # fmt: skip
    atomic_write_json(out / MANIFEST, manifest)
    return {
        "rows": plan["rows"],
        "shards": len(plan["shards"]),
        "skipped": len(done),
        "written": len(pending),
        "startup_seconds": startup,
        "run_seconds": elapsed,
        "output": str(out),
    }


def _run_shards(
    job: dict[str, Any], plan: dict[str, Any], pending: list[dict[str, Any]], args: Any
) -> None:
    from jiyi.scale.workers import ShardWorker

    items = [{**s, "path": plan["inputs"][s["input"]]["path"]} for s in pending]
    worker_job = {k: job[k] for k in ("kind", "settings", "output", "text_column", "shard_rows")}
    worker_job |= {"threads": args.cpus_per_worker, "gpus": args.num_gpus_per_worker}
    done = 0
    for row in actor_results(ShardWorker, worker_job, items, args, gpus=args.num_gpus_per_worker):
        done += int(row["rows"])
        if os.environ.get("JIYI_NO_PROGRESS") != "1":
            print(
                f"{row['name']}: {row['rows']} rows in {row['seconds']:.1f} s "
                f"({done} rows this run)",
                file=sys.stderr,
            )


def actor_results(
    worker: type, job: dict[str, Any], items: list[dict[str, Any]], args: Any, *, gpus: float
) -> Iterator[dict[str, Any]]:
    """Run `items` on a pool of --workers actors `worker(job)` (Ray Data `map_batches` with a
    callable class, `ActorPoolStrategy`), one item per call; yields each call's result row as it
    finishes. A JiyiError a worker raised is raised here, unwrapped. Needs a Ray session."""
    import ray.data

    ds = ray.data.from_items(items, override_num_blocks=len(items)).map_batches(
        worker,
        fn_constructor_kwargs={"job": job},
        batch_size=1,  # one item per call: a shard is written whole or not at all
        compute=ray.data.ActorPoolStrategy(size=min(args.workers, len(items))),
        num_cpus=args.cpus_per_worker,
        num_gpus=gpus or None,
    )
    try:
        yield from ds.iter_rows()
    except Exception as e:
        error = user_error(e)
        if error is None:
            raise
        raise error from None


# ---------------------------------------------------------------------------------------------
# The verbs (summarize: jiyi.scale.summarize, memory build: jiyi.scale.memory).


def checked_model(name: str, flag: str) -> tuple[str, dict[str, Any]]:
    """(resolved path, config.json) of a model, refused here rather than on every worker."""
    from jiyi.models import resolve_model

    path = resolve_model(name, flag)
    config: dict[str, Any] = {}
    if Path(path).is_dir():
        if not any(Path(path).glob("*.safetensors")):
            raise JiyiError(f"{flag} {name}: no .safetensors weights in {path}.")
        config = json.loads((Path(path) / "config.json").read_text(encoding="utf-8"))
    return path, config


def embed_job(args: argparse.Namespace, output: str, *, role: str, normalize: bool) -> dict:
    from jiyi.inspect.embeddings import parse_layers
    from jiyi.prompts import prompt_for

    if args.batch_size < 1:
        raise JiyiError(f"--batch-size {args.batch_size}: must be at least 1.")
    if args.max_length < 2:
        raise JiyiError(f"--max-length {args.max_length}: must be at least 2.")
    path, config = checked_model(args.model, "MODEL_OR_RUN")
    if "num_hidden_layers" in config:
        parse_layers(args.layers, int(config["num_hidden_layers"]))
    settings = {
        "model": path,
        "model_files": model_identity(path),
        "pooling": args.pooling,
        "layers": args.layers,
        "normalize": normalize,
        "batch_size": args.batch_size,
        "max_length": args.max_length,
        "prompt": prompt_for(path, role, args.prompt),
    }
    return {
        "kind": "embed",
        "settings": settings,
        "output": output,
        "text_column": getattr(args, "text_column", None) or "text",
        "shard_rows": getattr(args, "shard_rows", None) or MEMORY_SHARD_ROWS,
        "extra": {"dim": config.get("hidden_size")},
    }


def embed_on_ray(args: argparse.Namespace) -> int:
    """`jiyi embed MODEL --input FILES --output DIR --engine ray`."""
    job = embed_job(args, args.output, role="query", normalize=args.normalize)
    summary = run_job(job, args.input, args)
    dim = job["extra"]["dim"]
    report_job(summary, f"vectors{f' of {dim} dimensions' if dim else ''}")
    return 0


def predict_on_ray(args: argparse.Namespace) -> int:
    """`jiyi predict RUN_DIR --input FILES --output DIR --engine ray` (text classifiers)."""
    from jiyi import runs
    from jiyi.tasks import refuse_unless, task_of_run

    if args.memory is not None:
        raise JiyiError("--memory: not with --engine ray; use --engine local for kNN-augmented.")
    if args.run_dir is None:
        raise JiyiError("predict --engine ray: give RUN_DIR.")
    if args.output == "-":
        raise JiyiError(
            "--output: --engine ray writes a folder of Parquet shards; give --output DIR."
        )
    spec = task_of_run(args.run_dir)
    refuse_unless(spec, "predict", "jiyi predict")
    # the workers run jiyi.predict.Classifier: the predictor of the tasks with calibrated
    # probabilities (classification, multilabel)
    refuse_unless(spec, "calibrate", "jiyi predict --engine ray")
    model_dir = runs.model_dir(args.run_dir)
    meta = runs.read_meta(model_dir)
    if args.text_pair_column or meta.get("text_pair_column"):
        raise JiyiError(
            "--engine ray predicts single texts and this run reads text pairs; use --engine local."
        )
    _, config = checked_model(str(model_dir), "RUN_DIR")
    id2label = config.get("id2label", {})
    job = {
        "kind": "predict",
        "settings": {
            "model": str(model_dir.resolve()),
            "model_files": model_identity(str(model_dir)),
            "batch_size": args.batch_size,
        },
        "output": args.output,
        "text_column": args.text_column or meta.get("text_column", "text"),
        "shard_rows": args.shard_rows,
        "extra": {"labels": [str(id2label[k]) for k in sorted(id2label, key=int)]},
    }
    report_job(run_job(job, args.input, args), "predictions")
    return 0


def output_vectors(out_dir: str | os.PathLike) -> np.ndarray:
    """(N, H) float32 vectors of a finished embed job, row i = input row i."""
    table = read_output(out_dir)
    column = table.column("vector").combine_chunks()
    if len(column) == 0:
        return np.zeros((0, 0), dtype=np.float32)
    dim = column.type.list_size
    return column.flatten().to_numpy().reshape(-1, dim).astype(np.float32, copy=False)  # (N, H)


def report_job(summary: dict[str, Any], what: str) -> None:
    skipped = f"; {summary['skipped']} finished shards skipped" if summary["skipped"] else ""
    timing = (
        f"; Ray start-up {summary['startup_seconds']:.1f} s, run {summary['run_seconds']:.1f} s"
        if summary["written"]
        else ""
    )
    print(
        f"{summary['rows']} {what} written to {summary['output']} as {summary['shards']} "
        f"Parquet shards{skipped}{timing}",
        file=sys.stderr,
    )
