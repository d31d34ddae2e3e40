"""Token attributions (integrated gradients, gradient × input), sub-word → word merging, sliding
windows for texts longer than the model's maximum, and the deletion test (AOPC) that checks
whether an attribution is faithful to the model.

Every attribution explains f(x) = the probability of the target class as `jiyi predict` gives
it (`jiyi.calibrate.logits_to_probs`: the run's calibration, then softmax; sigmoid for a
multi-label model), so its scores and the deletion test speak the same unit.

    scores, delta = integrated_gradients(model, ids, target=1, baseline_ids=pad_baseline(ids, ...))
    words = merge_subwords(scores, word_ids)        # a word's score = the sum of its pieces

captum is imported only by `integrated_gradients` (and `require_captum`): it is the optional
extra `jiyi[inspect]`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from jiyi.calibrate import Calibration, logits_to_probs
from jiyi.errors import JiyiError

if TYPE_CHECKING:
    import torch

CAPTUM_MISSING = (
    "integrated gradients need captum, which is not installed. Install the extra: "
    "pip install 'jiyi[inspect]'"
)


def require_captum() -> None:
    """Fail early, with the extra to install, when captum is missing."""
    try:
        import captum.attr  # noqa: F401
    except ImportError:
        raise JiyiError(CAPTUM_MISSING) from None


def probability_forward(
    model: Any, multilabel: bool = False, calibration: Calibration | None = None
) -> Callable[..., torch.Tensor]:
    """f(input_ids, attention_mask, token_type_ids) -> class probabilities (B, C), calibrated."""

    def forward(
        input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor
    ) -> torch.Tensor:
        logits = model(
            input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
        ).logits  # (B, C)
        return logits_to_probs(logits, multilabel, calibration)

    return forward


def pad_baseline(input_ids: torch.Tensor, special_mask: torch.Tensor, pad_id: int) -> torch.Tensor:
    """The IG baseline: every content token replaced by [PAD], special tokens kept.

    [CLS] a great film [SEP] -> [CLS] [PAD] [PAD] [PAD] [SEP]
    """
    return input_ids.masked_fill(~special_mask.bool(), pad_id)


def integrated_gradients(
    model: Any,
    input_ids: torch.Tensor,
    target: int,
    *,
    baseline_ids: torch.Tensor,
    n_steps: int = 50,
    internal_batch_size: int = 16,
    multilabel: bool = False,
    calibration: Calibration | None = None,
) -> tuple[np.ndarray, float]:
    """Integrated gradients on the word-embedding layer (captum `LayerIntegratedGradients`).

    input_ids, baseline_ids: (1, T). Returns the attribution of each token, summed over the
    hidden dimension, (T,), and captum's convergence delta: sum(attributions) − (f(x) − f(x'))
    (completeness says it is 0; more `n_steps` bring it closer). `internal_batch_size` bounds
    how many interpolation steps go through the model at once (memory for long texts).
    The model should be in eval mode; gradients are taken w.r.t. the embeddings only.
    """
    import torch

    require_captum()
    from captum.attr import LayerIntegratedGradients

    mask = torch.ones_like(input_ids)
    types = torch.zeros_like(input_ids)
    lig = LayerIntegratedGradients(
        probability_forward(model, multilabel, calibration), model.get_input_embeddings()
    )
    attributions, delta = lig.attribute(
        input_ids,
        baselines=baseline_ids,
        target=target,
        additional_forward_args=(mask, types),
        n_steps=n_steps,
        internal_batch_size=max(1, internal_batch_size),
        return_convergence_delta=True,
    )  # (1, T, D), (1,)
    scores = attributions.sum(dim=-1)[0]  # (T,)
    return scores.detach().double().cpu().numpy(), float(delta.reshape(-1)[0])


def gradient_x_input(
    model: Any,
    input_ids: torch.Tensor,
    target: int,
    *,
    multilabel: bool = False,
    calibration: Calibration | None = None,
) -> np.ndarray:
    """Gradient × input on the word embeddings, summed over the hidden dimension: (1, T) -> (T,).

    One forward and one backward pass: the first-order Taylor term of f at the input.
    """
    import torch

    embeddings = model.get_input_embeddings()(input_ids).detach().requires_grad_(True)  # (1, T, D)
    logits = model(
        inputs_embeds=embeddings,
        attention_mask=torch.ones_like(input_ids),
        token_type_ids=torch.zeros_like(input_ids),
    ).logits  # (1, C)
    probs = logits_to_probs(logits, multilabel, calibration)
    (grad,) = torch.autograd.grad(probs[0, target], embeddings)  # (1, T, D)
    return (grad * embeddings).sum(dim=-1)[0].detach().double().cpu().numpy()


CJK_RANGES = (
    ("\u3000", "\u303f"),  # CJK symbols and punctuation (、。「」)
    ("\u3040", "\u30ff"),  # hiragana, katakana
    ("\u3400", "\u4dbf"),  # CJK extension A
    ("\u4e00", "\u9fff"),  # CJK unified ideographs
    ("\uf900", "\ufaff"),  # CJK compatibility ideographs
    ("\uff00", "\uffef"),  # full-width forms (，！？０-９)
)


def is_cjk(char: str) -> bool:
    """A character written without spaces around it: Han, kana, CJK and full-width punctuation."""
    return any(lo <= char <= hi for lo, hi in CJK_RANGES)


def text_word_ids(
    text: str, offsets: Sequence[tuple[int, int]], word_ids: Sequence[int | None]
) -> list[int | None]:
    """The tokenizer's word ids, with a word boundary before and after every CJK character.

    A SentencePiece tokenizer (XLM-R, e5) splits words on spaces only, so an unspaced Chinese
    sentence is one "word"; attributions merged by it say nothing. Here a token starts a new word
    when the tokenizer says so, or when it begins after the previous token ended and a CJK
    character stands on either side of that point; a token spanning several characters (质量)
    stays one word, and a bare "▁" token joins the token it overlaps.

    >>> text_word_ids("质量很好", [(0, 1), (0, 2), (2, 4)], [0, 0, 0])  # ▁ 质量 很好
    [0, 0, 1]
    >>> text_word_ids("a film", [(0, 1), (2, 6)], [0, 1])  # spaced text: unchanged
    [0, 1]
    """
    out: list[int | None] = []
    current, previous_word, previous_end = -1, None, None
    for w, (start, end) in zip(word_ids, offsets, strict=True):
        if w is None:
            out.append(None)
            continue
        boundary = (
            previous_end is not None
            and start >= previous_end
            and 0 < start < len(text)
            and (is_cjk(text[start]) or is_cjk(text[start - 1]))
        )
        if w != previous_word or boundary or previous_end is None:
            current += 1
        out.append(current)
        previous_word = w
        previous_end = end if previous_end is None else max(previous_end, end)
    return out


def merge_subwords(scores: np.ndarray, word_ids: Sequence[int | None]) -> np.ndarray:
    """Sub-word scores -> word scores: a word's score is the sum of its pieces' scores.

    `word_ids` is the fast tokenizer's `encoding.word_ids()`: the word each token belongs to,
    None for special tokens (dropped). Words are numbered in order of first appearance.

    >>> # "[CLS] un ##believ ##able film [SEP]" -> words "unbelievable", "film"
    >>> merge_subwords(np.array([9.0, 0.1, 0.2, 0.3, 1.0, 9.0]), [None, 0, 0, 0, 1, None])
    array([0.6, 1. ])
    """
    scores = np.asarray(scores, dtype=np.float64)
    if len(scores) != len(word_ids):
        raise ValueError(f"{len(scores)} scores for {len(word_ids)} tokens")
    order: dict[int, int] = {}
    for w in word_ids:
        if w is not None and w not in order:
            order[w] = len(order)
    merged = np.zeros(len(order))
    for s, w in zip(scores, word_ids, strict=True):
        if w is not None:
            merged[order[w]] += s
    return merged


def window_spans(n: int, size: int, stride: int) -> list[tuple[int, int]]:
    """Windows [start, end) of at most `size` tokens over `n` tokens, `stride` apart; the last
    window ends at n, so every token lies in at least one window and none is cut.

    >>> window_spans(10, 4, 2)
    [(0, 4), (2, 6), (4, 8), (6, 10)]
    >>> window_spans(9, 4, 3)
    [(0, 4), (3, 7), (5, 9)]
    >>> window_spans(3, 4, 2)
    [(0, 3)]
    """
    if size < 1 or stride < 1:
        raise ValueError(f"window size {size} and stride {stride} must be positive")
    if n <= size:
        return [(0, n)]
    spans = [(s, s + size) for s in range(0, n - size + 1, stride)]
    if spans[-1][1] < n:
        spans.append((n - size, n))
    return spans


def window_positions(span: tuple[int, int], n_content: int, prefix: int, suffix: int) -> np.ndarray:
    """Where each position of a window lands in the whole text's token sequence.

    The whole text is prefix + content + suffix (e.g. [CLS] ... [SEP]); a window keeps the
    special tokens and content[start:end]:
    >>> window_positions((2, 4), n_content=6, prefix=1, suffix=1)   # [CLS] c2 c3 [SEP]
    array([0, 3, 4, 7])
    """
    start, end = span
    return np.concatenate(
        [
            np.arange(prefix),
            prefix + np.arange(start, end),
            prefix + n_content + np.arange(suffix),
        ]
    ).astype(np.int64)


def merge_windows(
    values: Sequence[np.ndarray], positions: Sequence[np.ndarray], n: int
) -> np.ndarray:
    """Average per-window scores onto the whole text: each token's score is the mean over the
    windows that contain it. values[i] (..., T_i) with positions[i] (T_i,) -> (..., n)."""
    total: np.ndarray | None = None
    counts = np.zeros(n)
    for v, pos in zip(values, positions, strict=True):
        v = np.asarray(v, dtype=np.float64)
        if total is None:
            total = np.zeros((*v.shape[:-1], n))
        total[..., pos] += v
        counts[pos] += 1
    if total is None:
        raise ValueError("merge_windows: no windows")
    return total / np.maximum(counts, 1)


# ---------------------------------------------------------------------------- faithfulness


def deletion_aopc(
    predict: Callable[[list[list[int]]], np.ndarray],
    content_ids: Sequence[int],
    scores: dict[str, np.ndarray],
    target: int,
    *,
    max_k: int = 10,
    fraction: float = 0.2,
    n_random: int = 5,
    seed: int = 0,
) -> dict[str, Any]:
    """The deletion test (AOPC, Samek et al. 2017; DeYoung et al. 2020 "comprehensiveness").

    For k = 1..K, remove the k content tokens a method scores highest and measure the drop of
    the target's probability, p(x) − p(x without them); a method's AOPC is the mean drop over
    k. The same is done for k random tokens (`n_random` draws, same K); a faithful method's
    AOPC beats the random one (margin > 0). K = min(max_k, ceil(fraction · n)), at least 1.

    `predict(list of content id lists) -> (N, C)` adds the special tokens (and windows).
    `scores[method]`: one score per content token. Returns {"k", "n_tokens", "probability",
    "random": {"aopc", "curve"}, "methods": {name: {"aopc", "margin", "curve"}}}, curves
    listing the mean drop at k = 1..K.

    Example: 4 tokens, fraction 0.5, so K = 2; p(x) = 0.9. Without a method's top token
    p = 0.5, without its top two p = 0.3: curve [0.4, 0.6], AOPC 0.5. Random pairs of deletions
    drop p by 0.1 and 0.2 on average: random AOPC 0.15, margin +0.35.
    """
    ids = list(content_ids)
    n = len(ids)
    if n == 0:
        return {"k": 0, "n_tokens": 0, "probability": None, "random": None, "methods": {}}
    k_max = max(1, min(max_k, int(np.ceil(fraction * n)), n))
    rng = np.random.default_rng(seed)
    orders: dict[str, list[np.ndarray]] = {
        name: [np.argsort(-np.asarray(s, dtype=np.float64), kind="stable")]
        for name, s in scores.items()
    }
    orders["random"] = [rng.permutation(n) for _ in range(n_random)]

    batch: list[list[int]] = [ids]  # row 0: the unchanged text
    for order_list in orders.values():
        for order in order_list:
            for k in range(1, k_max + 1):
                drop = set(order[:k].tolist())
                batch.append([t for i, t in enumerate(ids) if i not in drop])
    probs = np.asarray(predict(batch))[:, target]  # (1 + rows,)
    p0 = float(probs[0])

    out: dict[str, Any] = {"k": k_max, "n_tokens": n, "probability": p0, "methods": {}}
    row = 1
    curves: dict[str, np.ndarray] = {}
    for name, order_list in orders.items():
        drops = p0 - probs[row : row + k_max * len(order_list)].reshape(len(order_list), k_max)
        row += k_max * len(order_list)
        curves[name] = drops.mean(axis=0)  # (K,)
    random_aopc = float(curves["random"].mean())
    out["random"] = {"aopc": random_aopc, "curve": curves.pop("random").tolist()}
    for name, curve in curves.items():
        aopc = float(curve.mean())
        out["methods"][name] = {
            "aopc": aopc,
            "margin": aopc - random_aopc,
            "curve": curve.tolist(),
        }
    return out


def summarize_faithfulness(results: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Per method over many texts: mean AOPC, mean random AOPC, margin with its standard error,
    and how often the method beats random on a text (`win_rate`)."""
    results = [r for r in results if r.get("k")]
    summary: dict[str, Any] = {"n_texts": len(results), "methods": {}}
    if not results:
        return summary
    random = np.array([r["random"]["aopc"] for r in results])
    summary["random_aopc"] = float(random.mean())
    for name in results[0]["methods"]:
        aopc = np.array([r["methods"][name]["aopc"] for r in results])
        margin = aopc - random
        stderr = float(margin.std(ddof=1) / np.sqrt(len(margin))) if len(margin) > 1 else None
        summary["methods"][name] = {
            "aopc": float(aopc.mean()),
            "random_aopc": float(random.mean()),
            "margin": float(margin.mean()),
            "margin_stderr": stderr,
            "win_rate": float((margin > 0).mean()),
        }
    return summary
