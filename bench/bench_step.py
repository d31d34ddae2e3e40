"""Where one training step's time goes: forward, backward, gradient clipping, the optimizer step
and zeroing the gradients, for jiyi's step (`jiyi.loop.build_optimizer`: fused AdamW, the
vocabulary table updated on the rows the batch touched; `jiyi.dropout`'s masks) beside the same
step with a dense update of the table, with torch's dropout, the Trainer's (`adamw_torch`:
torch's AdamW with its defaults, a per-tensor loop on the CPU, torch's dropout) and with
`--freeze-embeddings`.

HF_HUB_OFFLINE=1 python bench/bench_step.py [--model minilm] [--batch-size 32] [--length 48]
                                            [--precision fp32|bf16]

Random token ids, no padding, a 2-label classification head; the median of `--steps` timed steps
after 3 warm-up steps, each phase timed on its own. Writes OUTPUT/step.json;
`render_section(OUTPUT)` is the RESULTS.md section.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from common import read_json, run_header, write_json

PHASES = ("forward", "backward", "clip", "optimizer", "zero_grad")
VARIANTS = {
    "jiyi (fused AdamW, row-wise vocabulary, jiyi.dropout)": {"rowwise": True, "dropout": True},
    "jiyi with a dense vocabulary update": {"fused": True, "dropout": True},
    "jiyi with torch's dropout": {"rowwise": True},
    "Trainer adamw_torch (per-tensor AdamW)": {},
    "jiyi --freeze-embeddings": {"fused": True, "freeze": True, "dropout": True},
}


def measure(
    model_path: str, variant: dict[str, bool], batch: int, length: int, steps: int, bf16: bool
):
    import torch

    from jiyi.config import LoopConfig
    from jiyi.dropout import enable as enable_fast_dropout
    from jiyi.loop import build_optimizer
    from jiyi.models import load_for_classification
    from jiyi.penalties import param_groups
    from jiyi.rowwise import collect as collect_rows

    torch.manual_seed(0)
    model, _ = load_for_classification(model_path, ["a", "b"])
    if variant.get("dropout"):
        enable_fast_dropout(model)  # as jiyi.loop.start_run does
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16)
    if variant.get("freeze"):
        model.get_input_embeddings().weight.requires_grad_(False)
    tables = []
    if variant.get("rowwise"):  # jiyi's optimizer, as every trainer builds it
        optimizer, _ = build_optimizer(model, LoopConfig(lr=1e-5), total_steps=steps + 3)
        tables = optimizer.tables
    else:
        groups = param_groups(model, 0.01)
        extra = {"fused": True} if variant.get("fused") else {}
        optimizer = torch.optim.AdamW(groups, lr=1e-5, **extra)
    ids = torch.randint(1000, model.config.vocab_size, (batch, length))
    labels = torch.randint(0, 2, (batch,))
    model.train()
    times: dict[str, list[float]] = {p: [] for p in PHASES}
    for step in range(steps + 3):
        marks = [time.perf_counter()]
        with autocast:
            loss = model(input_ids=ids, labels=labels).loss
        marks.append(time.perf_counter())
        loss.backward()
        marks.append(time.perf_counter())
        torch.nn.utils.clip_grad_norm_([*model.parameters(), *collect_rows(tables)], 1.0)
        marks.append(time.perf_counter())
        optimizer.step()
        marks.append(time.perf_counter())
        optimizer.zero_grad(set_to_none=True)
        marks.append(time.perf_counter())
        if step >= 3:
            for phase, a, b in zip(PHASES, marks[:-1], marks[1:], strict=True):
                times[phase].append(b - a)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {
        "ms": {p: 1000 * statistics.median(v) for p, v in times.items()},
        "trainable_parameters": trainable,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="minilm")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--length", type=int, default=48)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
    p.add_argument("--output", type=Path, default=Path("bench/results/step"))
    args = p.parse_args(argv)
    from jiyi.models import resolve_model

    path = resolve_model(args.model)
    result: dict[str, Any] = {
        "model": args.model,
        "batch_size": args.batch_size,
        "length": args.length,
        "precision": args.precision,
        "variants": {},
    }
    for name, variant in VARIANTS.items():
        result["variants"][name] = measure(
            path, variant, args.batch_size, args.length, args.steps, args.precision == "bf16"
        )
        print(name, json.dumps(result["variants"][name]), file=sys.stderr, flush=True)
    result["header"] = run_header()
    result["command"] = " ".join([sys.executable, *sys.argv])
    write_json(args.output / "step.json", result)
    print(render_section(args.output))
    return 0


def render_section(folder: Path) -> str:
    """The `## Step-time breakdown` section of RESULTS.md ("" when not measured)."""
    r = read_json(folder / "step.json")
    if r is None:
        return ""
    h = r["header"]
    lines = [
        "## Step-time breakdown (bench/bench_step.py)",
        "",
        f"{r['model']}, batch {r['batch_size']} × {r['length']} tokens (random ids, no padding), "
        f"{r.get('precision', 'fp32')}; "
        f"median ms of each phase over the timed steps. {h['cpu']}, {h['cores']} cores, torch "
        f"{h['versions']['torch']}, load average {h['load']:.1f} at the end ({h['date']}).",
        "",
        "| step | trainable parameters | " + " | ".join(PHASES) + " | total | fixed cost |",
        "| --- | ---: |" + " ---: |" * (len(PHASES) + 2),
    ]
    for name, v in r["variants"].items():
        ms = v["ms"]
        total = sum(ms.values())
        fixed = ms["clip"] + ms["optimizer"] + ms["zero_grad"]
        lines.append(
            f"| {name} | {v['trainable_parameters'] / 1e6:.1f}M | "
            + " | ".join(f"{ms[p]:.1f}" for p in PHASES)
            + f" | {total:.1f} | {fixed:.1f} ({fixed / total:.0%}) |"
        )
    lines += ["", f"Command: `{r['command']}`", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
