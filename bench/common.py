"""What every benchmark leans on: data and result files, machine facts, counting, timing,
worker processes and Markdown tables. Imports no benchmark: each `bench_*.py` renders its own
section of RESULTS.md (`render_section`), and `results_md.py` lists them in order.

Free of heavy imports at module level: the parent process of `bench_train.py` only dispatches
workers and renders tables, so it never loads torch itself.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import platform
import random
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
JIYI = [sys.executable, "-m", "jiyi"]  # the CLI, in this interpreter


def read_csv(path: str | Path) -> list[dict[str, str]]:
    with open(path, encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def write_csv(
    path: str | Path, rows: list[dict[str, str]], columns: Sequence[str] = ("text", "label")
) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(columns), extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def subset(rows: list[dict[str, str]], n: int | None, seed: int = 0) -> list[dict[str, str]]:
    """A random `n` of `rows` in their original order (all of them when n is None or larger)."""
    if n is None or n >= len(rows):
        return rows
    keep = sorted(random.Random(seed).sample(range(len(rows)), n))
    return [rows[i] for i in keep]


def per_class_sample(rows: list[dict[str, str]], k: int, seed: int) -> list[dict[str, str]]:
    """`k` rows of every label, drawn with `seed`, shuffled: the few-shot training set."""
    rng = random.Random(seed)
    by_label: dict[str, list[dict[str, str]]] = {}
    for row in rows:
        by_label.setdefault(row["label"], []).append(row)
    picked = [r for label in sorted(by_label) for r in rng.sample(by_label[label], k)]
    rng.shuffle(picked)
    return picked


def write_json(path: str | Path, obj: Any) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, default=str) + "\n", encoding="utf-8")
    tmp.replace(path)


def read_json(path: str | Path) -> Any:
    """The JSON in `path`, or None when there is no such file (a benchmark that has not run)."""
    path = Path(path)
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def read_parts(folder: Path, names: Sequence[str]) -> dict[str, Any]:
    """FOLDER/NAME.json of every part in `names` that has run, in that order."""
    return {name: r for name in names if (r := read_json(folder / f"{name}.json")) is not None}


def repo_relative(text: str) -> str:
    """`text` with this repository's absolute path taken out of the paths it names."""
    return text.replace(str(REPO) + "/", "")


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for name in ("torch", "transformers", "jiyi"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "not installed"
    return out


def parameter_counts(model: Any) -> dict[str, int]:
    """All parameters, and those outside the embedding tables (word, position, token type).

    The non-embedding count is what the 6·N·tokens training-FLOPs rule uses (Kaplan et al. 2020):
    a table lookup costs no matmul. For MiniLM-L6 (vocab 30522, hidden 384) the tables hold
    ~11.9M of ~22.7M parameters.
    """
    import torch

    total = sum(p.numel() for p in model.parameters())
    tables = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Embedding))
    return {"total": total, "embedding_tables": tables, "non_embedding": total - tables}


def token_lengths(tokenizer: Any, texts: list[str], max_length: int) -> list[int]:
    """Real (non-pad) tokens per text, special tokens included, after truncation to max_length."""
    ids = tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]
    return [len(x) for x in ids]


def matmul_peak_gflops(threads: int, n: int = 2048, seconds: float = 4.0) -> dict[str, Any]:
    """fp32 matmul throughput of this machine: (n, n) @ (n, n) repeated for `seconds`."""
    import torch

    torch.set_num_threads(threads)
    a, b = torch.randn(n, n), torch.randn(n, n)
    for _ in range(3):  # warm-up: thread pool, caches, frequency
        torch.matmul(a, b)
    iters, t0 = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - t0) < seconds:
        torch.matmul(a, b)
        iters += 1
    return {
        "gflops": 2 * n**3 * iters / elapsed / 1e9,
        "n": n,
        "iters": iters,
        "seconds": elapsed,
        "threads": threads,
    }


def timed(fn: Callable[[], Any], repeats: int) -> tuple[Any, list[float]]:
    """Run `fn` `repeats` times; its last result and the wall seconds of every call."""
    times, result = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return result, times


def agreement(a: Sequence[Any], b: Sequence[Any]) -> float:
    return sum(x == y for x, y in zip(a, b, strict=True)) / max(1, len(a))


def mean_std(xs: Sequence[float]) -> tuple[float, float]:
    if not xs:
        return float("nan"), float("nan")
    return statistics.fmean(xs), statistics.stdev(xs) if len(xs) > 1 else 0.0


def md_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A Markdown table; right-aligns every column but the first."""
    align = ["---"] + ["---:"] * (len(headers) - 1)
    lines = ["| " + " | ".join(headers) + " |", "| " + " | ".join(align) + " |"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def fmt(x: Any, spec: str = ".3f", missing: str = "n/a") -> str:
    if x is None or (isinstance(x, float) and x != x):
        return missing
    return format(x, spec)


def verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("**met**" if ok else "**missed**")


def run_checked(cmd: list[str]) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(cmd, capture_output=True, text=True)
    sys.stderr.write(proc.stderr)
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-15:])
        raise RuntimeError(f"`{shlex.join(cmd)}` exited {proc.returncode}:\n{tail}")
    return proc


def worker_env(threads: int) -> dict[str, str]:
    """The environment of a benchmark's subprocesses: `threads` threads for every math library,
    no progress bars, offline unless HF_HUB_OFFLINE says otherwise."""
    env = {
        **os.environ,
        "OMP_NUM_THREADS": str(threads),
        "MKL_NUM_THREADS": str(threads),
        "TOKENIZERS_PARALLELISM": "false",
        "JIYI_NO_PROGRESS": "1",
        "PYTHONUNBUFFERED": "1",
    }
    env.setdefault("HF_HUB_OFFLINE", "1")
    return env


def run_worker(script: str | Path, name: str, out: Path, env: dict[str, str]) -> dict[str, Any]:
    """`script --worker NAME --output OUT` in a fresh process, its output in OUT/logs/NAME.log:
    the OUT/NAME.json it wrote, or the error that stopped it (with the log's last lines)."""
    result_file, log_file = out / f"{name}.json", out / "logs" / f"{name}.log"
    result_file.unlink(missing_ok=True)
    log_file.parent.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, str(Path(script).resolve()), "--worker", name, "--output", str(out)]
    t0 = time.perf_counter()
    with open(log_file, "w", encoding="utf-8") as log:
        rc = subprocess.run(cmd, env=env, stdout=log, stderr=subprocess.STDOUT).returncode
    wall = time.perf_counter() - t0
    if rc == 0 and result_file.is_file():
        return json.loads(result_file.read_text())
    tail = log_file.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-20:]
    return {
        "error": f"worker exited {rc}",
        "log": str(log_file),
        "log_tail": tail,
        "wall_seconds": wall,
    }


def export_dataset(name: str, folder: Path, env: dict[str, str]) -> None:
    """`jiyi data export NAME --output FOLDER` into an emptied FOLDER; exits on failure."""
    shutil.rmtree(folder, ignore_errors=True)
    cmd = [*JIYI, "data", "export", name, "--output", str(folder)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"`{shlex.join(cmd)}` failed ({proc.returncode}):\n{proc.stderr.strip()}")


def run_jiyi(argv: list[Any], threads: int) -> tuple[dict[str, Any], float, str]:
    """A jiyi verb in a subprocess: (its last stdout line as JSON, wall seconds, the command)."""
    cmd = [*JIYI, *(str(a) for a in argv)]
    print(f"$ {shlex.join(cmd)}", file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=worker_env(threads))
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-15:])
        raise RuntimeError(f"`{shlex.join(cmd)}` exited {proc.returncode}:\n{tail}")
    lines = proc.stdout.strip().splitlines()
    try:
        summary = json.loads(lines[-1]) if lines else {}
    except ValueError:
        summary = {}
    return summary, wall, shlex.join(cmd)


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    records = []
    for line in (run_dir / "metrics.jsonl").read_text("utf-8").splitlines():
        with contextlib.suppress(ValueError):  # a partial last line
            records.append(json.loads(line))
    return records


def fresh(path: Path) -> Path:
    shutil.rmtree(path, ignore_errors=True)  # jiyi refuses a non-empty --output
    return path


def epoch_trainer_arguments(
    output_dir: Path, hp: dict[str, Any], epochs: float, **extra: Any
) -> Any:
    """`TrainingArguments` of the Hugging Face Trainer baselines: the benchmark's batch, lr,
    warmup ratio, weight decay and seed; validation and logging once per epoch, no checkpoints,
    the GPU where there is one (as jiyi, through accelerate) else the CPU, no progress bars; `extra` on top (it may replace any of these, e.g.
    `eval_strategy="steps", eval_steps=100, bf16=True`)."""
    import torch
    from transformers import TrainingArguments

    arguments = {
        "output_dir": str(output_dir),
        "num_train_epochs": epochs,
        "per_device_train_batch_size": hp["batch_size"],
        "learning_rate": hp["lr"],
        "warmup_steps": hp["warmup_ratio"],  # a float < 1 is a ratio of the total steps in 5.x
        "weight_decay": hp["weight_decay"],
        "eval_strategy": "epoch",
        "save_strategy": "no",
        "logging_strategy": "epoch",
        "report_to": [],
        "seed": hp["seed"],
        "use_cpu": not torch.cuda.is_available(),
        "disable_tqdm": True,
    }
    return TrainingArguments(**{**arguments, **extra})


def train_tokens(lengths: list[int], epochs: float, steps: int, batch_size: int) -> int:
    """Real tokens trained on: every epoch's texts, less what a dropped last batch skipped.

    >>> train_tokens([10] * 100, epochs=2, steps=6, batch_size=32)  # 192 of 200 examples seen
    1920
    """
    seen = min(1.0, steps * batch_size / (epochs * len(lengths)))
    return round(sum(lengths) * epochs * seen)


def accelerator() -> str | None:
    """The GPU a run computes on (its name), or None on a CPU-only machine."""
    try:
        import torch
    except ImportError:
        return None
    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None


def run_header() -> dict[str, Any]:
    """The conditions a benchmark part ran under: CPU, GPU if any, cores, versions, load, date
    (UTC)."""
    return {
        "cpu": cpu_model(),
        **({"gpu": gpu} if (gpu := accelerator()) else {}),
        "cores": usable_cores(),
        "versions": versions(),
        "load": os.getloadavg()[0],
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
