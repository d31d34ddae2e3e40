"""`jiyi explain`: why did the model say that? Attention, rollout, gradient × input and
integrated gradients for each text, checked by a deletion test, as JSON, PNG and one HTML page.

    clf = jiyi.load("runs/demo")
    record = explain_text(clf, "a moving, funny film")
    record["scores"]["words"]["integrated_gradients"]   # one score per word
    record["faithfulness"]["methods"]["integrated_gradients"]["margin"]   # > 0: beats random

    write_explanations("runs/demo", ["a moving, funny film"], "out/")
    -> out/explain.json, explain.html, attributions.png, attention_layer1.png ... (one per layer)
       (+ faithfulness.json with faithfulness=True; + head_importance.json/.png with head_data)

A text longer than the run's max_length is cut into overlapping windows (stride: half a
window); every score is the mean over the windows holding the token, and the probabilities are
the mean over the windows. No token is dropped. The probabilities shown (and scored by the
deletion test) are the run's calibrated ones, as `jiyi predict` gives them, and the gradient
methods differentiate those same calibrated probabilities.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from jiyi.calibrate import logits_to_probs
from jiyi.errors import JiyiError
from jiyi.inspect.attention import (
    attention_entropy,
    attention_rollout,
    cls_attention,
    eager_attention,
    frozen,
    head_importance,
    stack_attentions,
)
from jiyi.inspect.attribution import (
    deletion_aopc,
    gradient_x_input,
    integrated_gradients,
    merge_subwords,
    merge_windows,
    pad_baseline,
    require_captum,
    summarize_faithfulness,
    text_word_ids,
    window_positions,
    window_spans,
)
from jiyi.inspect.explain_report import (
    MAX_MAP_TOKENS,
    METHODS,
    attention_layer_figure,
    attributions_figure,
    head_importance_figure,
    render_html,
)
from jiyi.io import atomic_write_bytes, atomic_write_json, atomic_write_text
from jiyi.render import figure_png

if TYPE_CHECKING:
    from jiyi.data.readers import Example
    from jiyi.predict import Classifier


def explain_text(
    clf: Classifier,
    text: str,
    *,
    target: str | None = None,
    n_steps: int = 50,
    internal_batch_size: int = 16,
    keep_maps: bool = True,
    max_k: int = 10,
    n_random: int = 5,
    seed: int = 0,
) -> dict[str, Any]:
    """Every method for one text, against `target` (default: the predicted label).

    Returns the JSON-ready record described in the module docstring; `attention.maps` is
    (L, H, T, T) for a text of at most MAX_MAP_TOKENS tokens in one window (and keep_maps),
    else None.
    """
    import torch

    from jiyi.data.collate import SpecialTemplate
    from jiyi.models import quiet_transformers

    tok, model = clf.tokenizer, clf.model
    template = SpecialTemplate.from_tokenizer(tok)
    with quiet_transformers():  # "longer than the maximum" is expected: we window below
        enc = tok(text, add_special_tokens=False, return_offsets_mapping=True)
    content: list[int] = enc["input_ids"]
    n_pre, n_suf = len(template.prefix), len(template.suffix)
    n_total = n_pre + len(content) + n_suf
    budget = max(1, clf.max_length - n_pre - n_suf)
    stride = max(1, budget // 2)
    spans = window_spans(len(content), budget, stride)
    positions = [window_positions(s, len(content), n_pre, n_suf) for s in spans]
    windows = [template.build(content[s:e], None)[0] for s, e in spans]
    pad_id = tok.pad_token_id if tok.pad_token_id is not None else 0
    device = next(model.parameters()).device

    with frozen(model):
        # 1. one eager pass per window: attention of every layer and head, and probabilities
        attn: list[np.ndarray] = []
        probs: list[np.ndarray] = []
        with eager_attention(model):
            for ids in windows:
                t = torch.tensor([ids], device=device)  # (1, T)
                inputs = {"input_ids": t, "attention_mask": torch.ones_like(t)}
                inputs["token_type_ids"] = torch.zeros_like(t)
                with torch.no_grad():
                    out = model(**inputs, output_attentions=True)
                attn.append(stack_attentions(out.attentions)[:, 0].cpu().numpy())  # (L, H, T, T)
                logits = out.logits.float()  # (1, C)
                p = logits_to_probs(logits, clf.multilabel, clf.calibration)[0]  # as predict
                probs.append(p.cpu().numpy())
        p_text = np.mean(probs, axis=0)  # (C,)
        target_index = _target_index(clf, target, p_text)

        # 2. gradient methods per window
        per_window: dict[str, list[np.ndarray]] = {m: [] for m in METHODS}
        deltas: list[float] = []
        for ids, a in zip(windows, attn, strict=True):
            t = torch.tensor([ids], device=device)  # (1, T)
            special = torch.zeros_like(t, dtype=torch.bool)
            special[:, :n_pre] = True
            special[:, t.shape[1] - n_suf :] = True
            per_window["attention"].append(cls_attention(a))
            per_window["rollout"].append(attention_rollout(a)[0])
            per_window["grad_input"].append(
                gradient_x_input(
                    model, t, target_index, multilabel=clf.multilabel, calibration=clf.calibration
                )
            )
            ig, delta = integrated_gradients(
                model,
                t,
                target_index,
                baseline_ids=pad_baseline(t, special, pad_id),
                n_steps=n_steps,
                internal_batch_size=internal_batch_size,
                multilabel=clf.multilabel,
                calibration=clf.calibration,
            )
            per_window["integrated_gradients"].append(ig)
            deltas.append(delta)

        # 3. windows -> whole text, tokens -> words
        token_scores = {m: merge_windows(v, positions, n_total) for m, v in per_window.items()}
        content_words = text_word_ids(text, enc["offset_mapping"], enc.word_ids())
        word_ids = [None] * n_pre + content_words + [None] * n_suf
        word_scores = {m: merge_subwords(s, word_ids) for m, s in token_scores.items()}

        # 4. faithfulness: delete the top-k content tokens of each method vs k random ones
        predict = window_predictor(clf, budget, stride)
        content_scores = {m: s[n_pre : n_pre + len(content)] for m, s in token_scores.items()}
        faithfulness = deletion_aopc(
            predict,
            content,
            content_scores,
            target_index,
            max_k=max_k,
            n_random=n_random,
            seed=seed,
        )

    all_ids = template.prefix + content + template.suffix
    single = len(spans) == 1
    maps = attn[0] if keep_maps and single and n_total <= MAX_MAP_TOKENS else None
    return {
        "text": text,
        "target": clf.labels[target_index],
        "predicted": _predicted(clf, p_text),
        "probabilities": {lab: _r(p) for lab, p in zip(clf.labels, p_text, strict=True)},
        "tokens": tok.convert_ids_to_tokens(all_ids),
        "windows": [list(s) for s in spans],
        "words": _words(text, enc["offset_mapping"], content_words, n_pre),
        "scores": {
            "tokens": {m: _r(s) for m, s in token_scores.items()},
            "words": {m: _r(s) for m, s in word_scores.items()},
        },
        "integrated_gradients": {"steps": n_steps, "delta": _r(max(deltas, key=abs))},
        "attention": {
            "layers": int(attn[0].shape[0]),
            "heads": int(attn[0].shape[1]),
            "entropy": _r(np.mean([attention_entropy(a) for a in attn], axis=0)),  # (L, H)
            "cls": _r(
                merge_windows([a[:, :, 0, :] for a in attn], positions, n_total)
            ),  # (L, H, T)
            "maps": maps,
        },
        "faithfulness": faithfulness,
    }


def window_predictor(
    clf: Classifier, budget: int, stride: int, batch_size: int = 64
) -> Callable[[list[list[int]]], np.ndarray]:
    """predict(list of content id lists) -> (N, C): special tokens added, long inputs windowed
    like `explain_text` (probabilities = mean over windows)."""
    import torch

    from jiyi.data.collate import SpecialTemplate

    template = SpecialTemplate.from_tokenizer(clf.tokenizer)
    pad_id = clf.tokenizer.pad_token_id or 0
    device = next(clf.model.parameters()).device

    def predict(contents: list[list[int]]) -> np.ndarray:
        rows: list[list[int]] = []
        owner: list[int] = []
        for i, c in enumerate(contents):
            for s, e in window_spans(len(c), budget, stride):
                rows.append(template.build(list(c[s:e]), None)[0])
                owner.append(i)
        out = np.zeros((len(rows), clf.model.config.num_labels))
        for start in range(0, len(rows), batch_size):
            chunk = rows[start : start + batch_size]
            width = max(len(r) for r in chunk)
            ids = torch.full((len(chunk), width), pad_id, dtype=torch.long)  # (B, T)
            mask = torch.zeros_like(ids)  # (B, T)
            for j, r in enumerate(chunk):
                ids[j, : len(r)] = torch.tensor(r)
                mask[j, : len(r)] = 1
            ids, mask = ids.to(device), mask.to(device)
            with torch.no_grad():
                logits = clf.model(
                    input_ids=ids, attention_mask=mask, token_type_ids=torch.zeros_like(ids)
                ).logits.float()  # (B, C)
            p = logits_to_probs(logits, clf.multilabel, clf.calibration)  # as predict gives
            out[start : start + len(chunk)] = p.cpu().numpy()
        sums = np.zeros((len(contents), out.shape[1]))
        np.add.at(sums, np.asarray(owner), out)
        return sums / np.bincount(owner, minlength=len(contents))[:, None]

    return predict


def write_explanations(
    run_dir: str | Path,
    texts: Sequence[str],
    output: str | Path,
    *,
    target: str | None = None,
    n_steps: int = 50,
    internal_batch_size: int = 16,
    max_texts: int = 50,
    max_maps: int = 10,
    faithfulness: bool = False,
    head_data: str | Path | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Path]:
    """Explain the first `max_texts` of `texts` and write the output folder; returns
    {file name: path}. `max_maps`: how many texts keep full attention maps (JSON + HTML grid)."""
    from jiyi.predict import load

    require_captum()
    if n_steps < 1 or internal_batch_size < 1 or max_texts < 1:
        raise JiyiError("--steps, --internal-batch-size and --max-texts must be at least 1.")
    if not texts:
        raise JiyiError("nothing to explain: no texts given.")
    clf = load(run_dir)
    if clf.meta.get("text_pair_column"):
        raise JiyiError(f"{run_dir}: explain handles single texts; this run was trained on pairs.")
    if target is not None and target not in clf.labels:
        raise JiyiError(f"--target {target}: not a label of this model ({', '.join(clf.labels)}).")
    head_examples = _read_head_data(clf, head_data) if head_data is not None else None
    out_dir = Path(output)
    chosen = list(texts)[:max_texts]

    records = []
    for i, text in enumerate(chosen):
        record = explain_text(
            clf, text, target=target, n_steps=n_steps, internal_batch_size=internal_batch_size,
            keep_maps=i < max_maps,
        )  # fmt: skip
        records.append({"index": i, **record})
        if progress:
            progress(i + 1, len(chosen))
    summary = summarize_faithfulness([r["faithfulness"] for r in records])

    pngs: dict[str, bytes] = {"attributions.png": figure_png(attributions_figure(records))}
    with_maps = next((r for r in records if r["attention"]["maps"] is not None), None)
    if with_maps is not None:
        for layer, heads in enumerate(with_maps["attention"]["maps"], start=1):
            fig = attention_layer_figure(heads, with_maps["tokens"], layer, with_maps["index"])
            pngs[f"attention_layer{layer}.png"] = figure_png(fig)
    importance = None
    if head_data is not None and head_examples is not None:
        importance = _head_importance_record(clf, head_data, head_examples)
        pngs["head_importance.png"] = figure_png(head_importance_figure(importance["importance"]))

    paths: dict[str, Path] = {}
    document = {
        "run_dir": str(run_dir),
        "labels": clf.labels,
        "max_length": clf.max_length,
        "methods": list(METHODS),
        "settings": {"steps": n_steps, "internal_batch_size": internal_batch_size},
        "n_input_texts": len(texts),
        "n_explained": len(records),
        "attention_png_text": with_maps["index"] if with_maps else None,
        "faithfulness": summary,
        "texts": [{**r, "attention": {**r["attention"], "maps": _maps(r)}} for r in records],
    }
    paths["explain.json"] = out_dir / "explain.json"
    text = json.dumps(document, ensure_ascii=False, separators=(",", ":"), default=_json_default)
    atomic_write_text(paths["explain.json"], text + "\n")  # compact: attention maps are large
    if faithfulness:
        paths["faithfulness.json"] = out_dir / "faithfulness.json"
        atomic_write_json(paths["faithfulness.json"], {"run_dir": str(run_dir), **summary})
    if importance is not None:
        paths["head_importance.json"] = out_dir / "head_importance.json"
        atomic_write_json(paths["head_importance.json"], importance)
    for name, data in pngs.items():
        paths[name] = out_dir / name
        atomic_write_bytes(paths[name], data)
    paths["explain.html"] = out_dir / "explain.html"
    atomic_write_text(paths["explain.html"], render_html(document, records, pngs))
    return paths


def _read_head_data(clf: Classifier, data: str | Path) -> list[Example]:
    """The labelled file of --head-importance, read (and its labels checked) before any work."""
    from jiyi.data.readers import read_examples

    try:
        examples = read_examples(
            data,
            text_column=clf.meta.get("text_column", "text"),
            label_column=clf.meta.get("label_column", "label"),
            task="multilabel" if clf.multilabel else "classification",
        ).examples
    except JiyiError as e:
        raise JiyiError(f"--data {e}") from None
    names = {lab for e in examples for lab in ([e.label] if isinstance(e.label, str) else e.label)}
    unknown = sorted(names - set(clf.labels))
    if unknown:
        raise JiyiError(
            f"--data {data}: labels the model does not know: {', '.join(unknown)} "
            f"(it knows {', '.join(clf.labels)})."
        )
    return examples


def _head_importance_record(clf: Classifier, data: str | Path, examples: list[Example]) -> dict:
    imp = head_importance(
        clf.model, clf.tokenizer, [e.text for e in examples], [e.label for e in examples],
        max_length=clf.max_length,
    )  # fmt: skip
    return {
        "data": str(data),
        "n_texts": len(examples),
        "method": "Michel et al. 2019: mean |dloss/dgate| per example, rows L2-normalised",
        "shape": list(imp.shape),
        "importance": _r(imp),
    }


# ---------------------------------------------------------------------------- small helpers


def _target_index(clf: Classifier, target: str | None, probs: np.ndarray) -> int:
    if target is None:
        return int(np.argmax(probs))
    return clf.labels.index(target)


def _predicted(clf: Classifier, probs: np.ndarray) -> str | list[str]:
    if clf.multilabel:
        return [lab for lab, p, t in zip(clf.labels, probs, clf.thresholds, strict=True) if p >= t]
    return clf.labels[int(np.argmax(probs))]


def _words(
    text: str, offsets: list[tuple[int, int]], word_ids: list[int | None], n_pre: int
) -> list[dict[str, Any]]:
    """Words in order of `merge_subwords`: their text span and their token positions."""
    words: dict[int, dict[str, Any]] = {}
    for i, (w, (start, end)) in enumerate(zip(word_ids, offsets, strict=True)):
        if w is None:
            continue
        if w not in words:
            words[w] = {"start": start, "end": end, "tokens": []}
        word = words[w]
        word["start"], word["end"] = min(word["start"], start), max(word["end"], end)
        word["tokens"].append(n_pre + i)
    return [{"text": text[w["start"] : w["end"]], **w} for w in words.values()]


def _maps(record: dict[str, Any]) -> Any:
    maps = record["attention"]["maps"]
    return None if maps is None else np.round(np.asarray(maps, dtype=np.float64), 4)


def _r(x: Any, digits: int = 6) -> Any:
    """Round for JSON: floats and arrays (to nested lists)."""
    if isinstance(x, np.ndarray):
        return np.round(x.astype(np.float64), digits).tolist()
    return round(float(x), digits)


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "tolist"):
        return obj.tolist()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
