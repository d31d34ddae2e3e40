"""`jiyi env --bench`: how fast this machine is for a model, in seconds: the matrix-product peak
(fp32 and bf16), one training step and one prediction batch of the model at each precision, the
model FLOP utilisation (MFU) of each against the measured peak, and what `--precision auto`
would choose.

jiyi env --bench                                   # minilm, batch 32, 128 tokens
jiyi env --bench --model me5-small --max-length 64 --json

The step is a classification step on random token ids (no padding: every text `--max-length`
tokens), AdamW included; the FLOPs are the usual estimate, 6 × non-embedding parameters × tokens
plus the attention scores (a forward pass is a third of that). Other busy processes lower every
figure, the peak included, and a peak measured under load inflates MFU: how busy the CPU was at the
start (from /proc/stat) is part of the report, with a warning when the machine was not idle. The
peak is measured before and after the model's timings and the higher one counts; when the two
differ much (a shared virtual machine's speed varies even when it is idle), a warning says so.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

from jiyi.precision import device_has_bf16, resolve_precision

MATMUL_SIZE = 1024
# Two peaks (before and after the model) further apart than this share of the higher one are
# a warning: on a shared 2-core AMD EPYC VM, idle by /proc/stat, two commands a minute apart
# measured 66.4 and 47.4 GFLOP/s, and MFU against the lower one read 106%.
PEAK_STEADY = 0.85


def busy_share(seconds: float = 1.0) -> float | None:
    """The share of all CPU time other work took over the next `seconds` (from /proc/stat; None
    off Linux): 0 on an idle machine. Unlike the load average, which trails by a minute, it says
    whether something runs now."""

    def sample() -> tuple[int, int]:
        with open("/proc/stat", encoding="ascii") as f:
            values = [int(v) for v in f.readline().split()[1:]]
        return values[3] + values[4], sum(values)  # idle + iowait, total

    try:
        idle0, total0 = sample()
        time.sleep(seconds)
        idle1, total1 = sample()
    except (OSError, ValueError, IndexError):
        return None
    return 1.0 - (idle1 - idle0) / max(1, total1 - total0)


def best_seconds(fn: Callable[[], Any], repeats: int, budget: float = 2.0) -> float:
    """The fastest of `repeats` timed calls of `fn` (after one untimed warm-up call), stopping
    early once `budget` seconds have gone by: the fastest run is the least disturbed one."""
    fn()
    times: list[float] = []
    start = time.perf_counter()
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
        if time.perf_counter() - start > budget:
            break
    return min(times)


def matmul_peak(precision: str, size: int | None = None) -> float:
    """FLOP/s of a square `size` (MATMUL_SIZE) matrix product in fp32 or bf16 on the CPU's torch
    threads."""
    import torch

    size = size or MATMUL_SIZE
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    a = torch.randn(size, size).to(dtype)
    b = torch.randn(size, size).to(dtype)
    seconds = best_seconds(lambda: torch.mm(a, b), repeats=50)
    return 2 * size**3 / seconds


def model_flops(config: Any, n_params: int, tokens: int, length: int) -> float:
    """Training FLOPs of one step over `tokens` tokens in texts of `length`: 6 × non-embedding
    parameters × tokens + the attention scores (6 × 2 × layers × length × hidden per token)."""
    embedding = config.vocab_size * config.hidden_size
    dense = max(n_params - embedding, 0)
    attention = 2 * config.num_hidden_layers * length * config.hidden_size
    return 6.0 * (dense + attention) * tokens


def model_timings(model_path: str, batch_size: int, length: int, precision: str) -> dict[str, Any]:
    """Seconds of one training step (forward, backward, clipping, the optimizer, as `jiyi train`
    steps: its dropout masks, `jiyi.loop.build_optimizer`) and one prediction batch (forward, no
    gradients) of the model at `precision`, on random ids of `length` tokens."""
    import torch

    from jiyi.config import LoopConfig
    from jiyi.dropout import enable as enable_fast_dropout
    from jiyi.loop import build_optimizer
    from jiyi.models import load_for_classification
    from jiyi.rowwise import collect as collect_rows

    torch.manual_seed(0)
    model, tokenizer = load_for_classification(model_path, ["a", "b"])
    enable_fast_dropout(model)  # as jiyi trains: its dropout masks, its optimizer
    optimizer, _ = build_optimizer(model, LoopConfig(lr=1e-5), total_steps=1)
    special = set(tokenizer.all_special_ids)
    low = max(special) + 1 if max(special) < 1000 else 1000
    ids = torch.randint(low, model.config.vocab_size, (batch_size, length))
    mask = torch.ones_like(ids)
    labels = torch.randint(0, 2, (batch_size,))
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16")

    def step() -> None:
        with autocast:
            loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        rows = collect_rows(optimizer.tables)  # the vocabulary rows the batch touched
        torch.nn.utils.clip_grad_norm_([*model.parameters(), *rows], 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    def predict() -> None:
        with torch.inference_mode(), autocast:
            model(input_ids=ids, attention_mask=mask)

    model.train()
    train_s = best_seconds(step, repeats=3, budget=20.0)
    model.eval()
    predict_s = best_seconds(predict, repeats=5, budget=10.0)
    n_params = sum(p.numel() for p in model.parameters())
    flops = model_flops(model.config, n_params, batch_size * length, length)
    return {
        "train_step_s": train_s,
        "train_tokens_per_s": batch_size * length / train_s,
        "train_flops_per_s": flops / train_s,
        "predict_batch_s": predict_s,
        "predict_texts_per_s": batch_size / predict_s,
        "predict_flops_per_s": flops / 3 / predict_s,
        "parameters": n_params,
    }


def machine_bench(
    model: str = "minilm", batch_size: int = 32, max_length: int = 128
) -> dict[str, Any]:
    """The report of `jiyi env --bench` (see the module docstring)."""
    import torch

    from jiyi.errors import JiyiError
    from jiyi.models import position_limit, resolve_model

    busy = busy_share()
    cores = os.cpu_count() or 1
    path = resolve_model(model)
    limit = position_limit(path)
    if limit is not None and max_length > limit:
        raise JiyiError(f"--max-length {max_length}: {model} reads at most {limit} tokens.")
    precisions = ["fp32", "bf16"] if device_has_bf16("cpu") else ["fp32"]
    report: dict[str, Any] = {
        "model": model,
        "batch_size": batch_size,
        "max_length": max_length,
        "torch_threads": torch.get_num_threads(),
        "cpu_cores": cores,
        "busy_at_start": busy,
        "precision_auto": resolve_precision("auto", "cpu")[0],
        "precisions": {},
    }
    warnings = []
    if busy is not None and busy > 0.1:
        warnings.append(
            f"other processes used {busy:.0%} of the CPU when the measurement started, so every "
            "figure is low and the peak may be too (MFU then reads high). Measure again on an "
            "idle machine."
        )
    for precision in precisions:
        before = matmul_peak(precision)
        timing = model_timings(path, batch_size, max_length, precision)
        peaks = [before, matmul_peak(precision)]  # around the model; the higher one counts
        peak = max(peaks)
        timing["matmul_peak_flops_per_s"] = peak
        timing["matmul_peak_samples"] = peaks
        timing["train_mfu"] = timing["train_flops_per_s"] / peak
        timing["predict_mfu"] = timing["predict_flops_per_s"] / peak
        report["precisions"][precision] = timing
        mfu = max(timing["train_mfu"], timing["predict_mfu"])
        if min(peaks) < PEAK_STEADY * peak or mfu > 1:
            warnings.append(
                f"the {precision} matrix-product peak moved between {min(peaks) / 1e9:.1f} and "
                f"{peak / 1e9:.1f} GFLOP/s during the command"
                + (f" and the model ran at {mfu:.0%} of the higher" if mfu > 1 else "")
                + ": this machine's speed varies (other work, or a virtual machine sharing its "
                "cores), so its timings vary as much and MFU is approximate."
            )
    if "bf16" in report["precisions"]:
        fp32, bf16 = report["precisions"]["fp32"], report["precisions"]["bf16"]
        report["bf16_train_speedup"] = fp32["train_step_s"] / bf16["train_step_s"]
        report["bf16_predict_speedup"] = fp32["predict_batch_s"] / bf16["predict_batch_s"]
    if warnings:
        report["warning"] = " ".join(warnings)
    return report


def render_bench(report: dict[str, Any]) -> str:
    """The report as the lines `jiyi env --bench` prints."""
    lines = [
        f"{report['model']}: batch {report['batch_size']} × {report['max_length']} tokens, "
        f"{report['torch_threads']} torch threads on {report['cpu_cores']} cores"
        + (
            f", the CPU {report['busy_at_start']:.0%} busy with other work at the start"
            if report.get("busy_at_start") is not None
            else ""
        ),
        "",
        f"{'precision':<10}{'matmul peak':>14}{'train step':>12}{'tokens/s':>10}{'MFU':>7}"
        f"{'predict batch':>15}{'texts/s':>9}{'MFU':>7}",
    ]
    for name, t in report["precisions"].items():
        lines.append(
            f"{name:<10}{t['matmul_peak_flops_per_s'] / 1e9:>8.1f} GFLOP/s"
            f"{t['train_step_s']:>11.3f}s{t['train_tokens_per_s']:>10.0f}{t['train_mfu']:>7.0%}"
            f"{t['predict_batch_s']:>14.3f}s{t['predict_texts_per_s']:>9.1f}"
            f"{t['predict_mfu']:>7.0%}"
        )
    lines.append("")
    if "bf16_train_speedup" in report:
        lines.append(
            f"--precision auto chooses {report['precision_auto']} here: training steps "
            f"{report['bf16_train_speedup']:.2f}× and prediction {report['bf16_predict_speedup']:.2f}× "
            "as fast as fp32. Training uses it; prediction and serving run in fp32 unless the "
            "model is a bf16 copy (jiyi compress RUN --method bf16 --output DIR)."
        )
    else:
        lines.append(
            "--precision auto chooses fp32 here: this CPU has no native bfloat16 (bf16 would be "
            "emulated, slower)."
        )
    if "warning" in report:
        lines.append(f"Warning: {report['warning']}")
    return "\n".join(lines)
