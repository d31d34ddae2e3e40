"""One honest table: every artifact measured in the same process, one after another, warm, with
the same pinned thread count.

Per artifact: size on disk (MB), parameters, test accuracy and macro-F1, latency p50/p95 at
batch 1 (one text cut to 32 tokens, after warm-up), throughput at batch 64 (texts/s over the
test file, after a warm-up batch), and peak RSS while it was loaded and run (VmHWM, reset before
each artifact through /proc/self/clear_refs; the process's own baseline included).
"""

from __future__ import annotations

import gc
import time
from pathlib import Path
from typing import Any

import numpy as np

from jiyi.errors import JiyiError

LATENCY_RUNS = 60
LATENCY_WARMUP = 8
LATENCY_TOKENS = 32


def _reset_peak_rss() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _peak_rss_mb() -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def disk_mb(folder: Path) -> float:
    weights = [f for f in folder.iterdir() if f.suffix in (".safetensors", ".onnx", ".data")]
    return sum(f.stat().st_size for f in weights) / 1e6


def parameter_count(model: Any, folder: Path) -> int:
    """Parameters of a torch model (int8 weights counted as parameters too), or of an ONNX
    graph's initializers."""
    if hasattr(model, "session"):
        import onnx

        graph = onnx.load(str(model.path), load_external_data=False).graph
        return int(sum(int(np.prod(t.dims)) for t in graph.initializer if len(t.dims) >= 1))
    total = sum(p.numel() for p in model.parameters())
    from torch.ao.nn.quantized.dynamic import Linear as QLinear

    for m in model.modules():
        if isinstance(m, QLinear):
            w = m.weight()
            total += w.numel() + (m.bias().numel() if m.bias() is not None else 0)
    return int(total)


def measure(
    name: str,
    folder: Path,
    texts: list[str],
    gold: list[int] | None,
    *,
    threads: int,
) -> dict[str, Any]:
    """Load `folder` as `jiyi predict` would and measure it; see the module docstring."""
    import torch

    from jiyi.data.collate import encode
    from jiyi.evaluate import classification_metrics
    from jiyi.predict import Classifier, forward_probs

    gc.collect()
    peak_ok = _reset_peak_rss()
    torch.set_num_threads(threads)
    t0 = time.perf_counter()
    clf = Classifier(folder, batch_size=64, threads=threads)
    load_s = time.perf_counter() - t0
    if clf.multilabel:
        raise JiyiError(f"{folder}: the compression report measures single-label models only.")
    pad = clf.tokenizer.pad_token_id or 0
    # batch 1: one text cut to exactly LATENCY_TOKENS tokens (or its whole length if shorter)
    longest = max(texts, key=len)
    one = encode(clf.tokenizer, [longest], None, LATENCY_TOKENS, "head")
    for _ in range(LATENCY_WARMUP):
        forward_probs(clf.model, one, pad_id=pad, batch_size=1, multilabel=False)
    times = []
    for _ in range(LATENCY_RUNS):
        t = time.perf_counter()
        forward_probs(clf.model, one, pad_id=pad, batch_size=1, multilabel=False)
        times.append(time.perf_counter() - t)
    # batch 64 over the test texts: throughput and the metrics
    enc = encode(clf.tokenizer, texts, None, clf.max_length, clf.truncation)
    warm = encode(clf.tokenizer, texts[:64], None, clf.max_length, clf.truncation)
    forward_probs(clf.model, warm, pad_id=pad, batch_size=64, multilabel=False)
    t = time.perf_counter()
    rows, probs = forward_probs(  # as predict: with the model's calibration, if it has one
        clf.model, enc, pad_id=pad, batch_size=64, multilabel=False, calibration=clf.calibration
    )
    throughput_s = time.perf_counter() - t
    ordered = np.empty_like(probs)
    ordered[rows] = probs
    result: dict[str, Any] = {
        "name": name,
        "path": str(folder),
        "format": clf.meta.get("format", "torch"),
        "size_mb": round(disk_mb(folder), 2),
        "parameters": parameter_count(clf.model, folder),
        "load_seconds": round(load_s, 3),
        "latency_ms_p50": round(1000 * float(np.percentile(times, 50)), 3),
        "latency_ms_p95": round(1000 * float(np.percentile(times, 95)), 3),
        "latency_tokens": int(one.lengths[0]),
        "throughput_texts_per_s": round(len(texts) / throughput_s, 1),
        "threads": threads,
        "predictions": ordered.argmax(axis=1).tolist(),
    }
    if gold is not None:
        m = classification_metrics(np.asarray(gold), ordered, clf.labels)
        result["accuracy"] = m["accuracy"]
        result["f1_macro"] = m["f1_macro"]
    result["peak_rss_mb"] = round(_peak_rss_mb() or 0.0, 1) if peak_ok else None
    del clf
    gc.collect()
    return result


def table(results: list[dict[str, Any]]) -> str:
    """The report as a Markdown table, each row against the first (the original)."""
    base = results[0]
    head = (
        "| model | format | MB | params | accuracy | macro-F1 | p50 ms (b=1) | p95 ms | "
        "texts/s (b=64) | speed-up b=1 / b=64 | peak RSS MB |"
    )
    lines = [head, "|" + " --- |" * 11]
    for r in results:
        acc = f"{r['accuracy']:.4f}" if "accuracy" in r else "n/a"
        f1 = f"{r['f1_macro']:.4f}" if "f1_macro" in r else "n/a"
        up1 = base["latency_ms_p50"] / r["latency_ms_p50"]
        up64 = r["throughput_texts_per_s"] / base["throughput_texts_per_s"]
        lines.append(
            f"| {r['name']} | {r['format']} | {r['size_mb']:.1f} | {r['parameters'] / 1e6:.1f}M | "
            f"{acc} | {f1} | {r['latency_ms_p50']:.2f} | {r['latency_ms_p95']:.2f} | "
            f"{r['throughput_texts_per_s']:.0f} | {up1:.2f}× / {up64:.2f}× | "
            f"{r['peak_rss_mb'] if r['peak_rss_mb'] is not None else 'n/a'} |"
        )
    return "\n".join(lines)
