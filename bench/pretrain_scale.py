"""Part `scale` of bench_pretrain.py: `jiyi pretrain` streaming a corpus larger than any buffer.

Generates a Zipf-distributed pseudo-word corpus of --size-gb, trains an 8,000-entry tokenizer on
its first 20 MB, runs `jiyi pretrain --max-steps N` on the whole file in a subprocess and samples
the RSS of it and its children every 0.25 s; times `count_blocks`. `render` is this part's
subsection of the Pretraining section of RESULTS.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from common import JIYI, fmt, fresh, md_table, read_metrics, run_jiyi, verdict, worker_env

RSS_TARGET_GIB = 4.0


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
    _, tok_wall, tok_cmd = run_jiyi(
        ["tokenizer", "train", "--corpus", head, "--vocab-size", 8000, "--output", tokenizer,
         "--overwrite"], args.threads,
    )  # fmt: skip

    # 2. jiyi pretrain on the whole file, in a subprocess, its RSS sampled every 0.25 s
    run_dir = fresh(out / "scale-run")
    cmd = [*JIYI, "pretrain", "--corpus", str(corpus), "--architecture", args.config,
           "--tokenizer", str(tokenizer), "--max-steps", str(args.steps),
           "--batch-size", str(args.batch_size), "--log-every", "1",
           "--threads", str(args.threads), "--output", str(run_dir)]  # fmt: skip
    print(f"$ {shlex.join(cmd)}", file=sys.stderr, flush=True)
    watch = watch_process(cmd, run_dir, out / "scale-run.log", worker_env(args.threads))
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


# --- RESULTS.md ---------------------------------------------------------------------------------


def render(r: dict[str, Any]) -> list[str]:
    s, count = r["settings"], r.get("count_blocks") or {}
    peak = r["peak_rss_gib"]
    row = [
        f"{r['corpus_bytes'] / 1e9:.2f} GB",
        r["steps"],
        fmt(r["wall_seconds"], ".0f"),
        fmt(r["seconds_to_first_step"], ".1f"),
        f"{peak:.2f} GiB",
        fmt(r["median_tokens_per_s"], ",.0f"),
    ]
    how = "counted exactly" if count.get("exact") else "estimated from a sample"
    return [
        "### Memory: streaming a large corpus\n",
        f"A generated corpus (Zipf-distributed pseudo-words from a 20,000-word vocabulary, lines of "
        f"5–200 words), a tokenizer of {s['vocab_size']} entries trained on its first "
        f"{s['tokenizer_corpus_bytes'] / 1e6:.0f} MB, then `{r['pretrain_command']}`. Resident "
        "memory of the process and its children sampled every 0.25 s.\n",
        md_table(["corpus", "steps", "wall s", "first step at s", "peak RSS", "tokens/s"], [row]),
        "",
        f"Peak RSS before the first training step (held-out collection, shuffle buffer filled): "
        f"{r['peak_rss_before_first_step_gib']:.2f} GiB; the start record came at "
        f"{fmt(r['seconds_to_start_record'], '.1f')} s. Counting the corpus's sequences, what a "
        f"run without --max-steps does first: {fmt(count.get('blocks'), ',')} ({how}) in "
        f"{fmt(count.get('seconds'), '.1f')} s.\n",
        f"Target: peak RSS < {r['target_gib']:g} GiB: {peak:.2f} GiB — "
        f"{verdict(peak < r['target_gib'])}\n",
    ]
