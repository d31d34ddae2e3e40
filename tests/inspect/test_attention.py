"""Attention maps, rollout and head importance on the tiny trained run (2 layers, 4 heads)."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch

import jiyi
from jiyi.data.collate import encode, pad_batch
from jiyi.errors import JiyiError
from jiyi.inspect.attention import (
    attention_entropy,
    attention_maps,
    attention_rollout,
    eager_attention,
    head_gates,
    head_importance,
)

TEXTS = ["the film was good", "a very dull and boring story with awful actors", "fine"]


@pytest.fixture(scope="module")
def clf(trained_run: Path) -> jiyi.predict.Classifier:
    return jiyi.load(trained_run)


def batch_inputs(clf, texts: list[str]) -> dict[str, torch.Tensor]:
    enc = encode(clf.tokenizer, texts, None, clf.max_length)
    return pad_batch(enc, list(range(len(texts))), clf.tokenizer.pad_token_id)


def test_attention_rows_sum_to_one_in_every_layer_and_head(clf) -> None:
    inputs = batch_inputs(clf, TEXTS)  # padded: the texts differ in length
    with eager_attention(clf.model):
        attn = attention_maps(clf.model, inputs)
    n, t = len(TEXTS), inputs["input_ids"].shape[1]
    assert attn.shape == (2, n, 4, t, t)  # (L, B, H, T, T)
    rows = attn.sum(dim=-1)  # (L, B, H, T)
    torch.testing.assert_close(rows, torch.ones_like(rows), atol=1e-5, rtol=0)
    pad = inputs["attention_mask"] == 0  # (B, T): padded keys get no attention
    assert attn.permute(0, 2, 3, 1, 4)[..., pad].abs().max() < 1e-6


def test_eager_attention_restores_the_implementation(clf) -> None:
    before = clf.model.config._attn_implementation
    with eager_attention(clf.model):
        assert clf.model.config._attn_implementation == "eager"
    assert clf.model.config._attn_implementation == before


def test_rollout_of_a_hand_example() -> None:
    a = np.full((1, 1, 2, 2), 0.5)  # one layer, one head, uniform
    np.testing.assert_allclose(attention_rollout(a), [[0.75, 0.25], [0.25, 0.75]])
    # two layers multiply, the last on the left
    first = np.array([[[[1.0, 0.0], [1.0, 0.0]]]])  # every token reads token 0
    second = np.array([[[[0.0, 1.0], [0.0, 1.0]]]])  # every token reads token 1
    r = attention_rollout(np.concatenate([first, second]))
    mixed1 = (first[0, 0] + np.eye(2)) / 2
    mixed2 = (second[0, 0] + np.eye(2)) / 2
    np.testing.assert_allclose(r, mixed2 @ mixed1)


def test_rollout_rows_sum_to_one(clf) -> None:
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(6, 3, 9, 9))
    random_attn = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    np.testing.assert_allclose(attention_rollout(random_attn).sum(-1), np.ones(9))
    inputs = batch_inputs(clf, TEXTS[:1])
    with eager_attention(clf.model):
        attn = attention_maps(clf.model, inputs)[:, 0]  # (L, H, T, T)
    r = attention_rollout(attn)
    assert r.shape == (attn.shape[-1],) * 2
    np.testing.assert_allclose(r.sum(-1), np.ones(len(r)), atol=1e-6)
    assert (r >= 0).all()


def test_attention_entropy_bounds() -> None:
    uniform = np.full((1, 2, 5, 5), 0.2)
    np.testing.assert_allclose(attention_entropy(uniform), np.full((1, 2), np.log(5)))
    one_hot = np.broadcast_to(np.eye(5), (1, 2, 5, 5))
    np.testing.assert_allclose(attention_entropy(one_hot), np.zeros((1, 2)), atol=1e-9)


def test_head_gates_of_one_change_nothing_and_zero_removes_a_head(clf) -> None:
    inputs = batch_inputs(clf, TEXTS)
    with torch.no_grad():
        plain = clf.model(**inputs).logits
        with head_gates(clf.model, torch.ones(3, 2, 4)):
            gated = clf.model(**inputs).logits
        off = torch.ones(3, 2, 4)
        off[:, 1, 2] = 0.0
        with head_gates(clf.model, off):
            removed = clf.model(**inputs).logits
        after = clf.model(**inputs).logits  # hooks gone
    torch.testing.assert_close(gated, plain)
    torch.testing.assert_close(after, plain)
    assert not torch.allclose(removed, plain)


def test_head_importance_shape_and_normalisation(clf, tiny_data_dir: Path) -> None:
    from jiyi.data.readers import read_examples

    examples = read_examples(tiny_data_dir / "validation.csv").examples[:24]
    texts, labels = [e.text for e in examples], [e.label for e in examples]
    imp = head_importance(clf.model, clf.tokenizer, texts, labels, batch_size=8, max_length=32)
    assert imp.shape == (2, 4)  # (L, H)
    assert (imp >= 0).all() and imp.max() > 0
    np.testing.assert_allclose(np.linalg.norm(imp, axis=-1), np.ones(2), atol=1e-6)
    ids = [clf.model.config.label2id[label] for label in labels]  # class ids work too
    again = head_importance(clf.model, clf.tokenizer, texts, ids, batch_size=5, max_length=32)
    np.testing.assert_allclose(again, imp, atol=1e-6)  # batching does not change it
    assert all(p.requires_grad for p in clf.model.parameters())  # restored after


def test_head_importance_is_the_loss_sensitivity_to_the_gate(clf) -> None:
    """Unnormalised importance of one text = |dL/dξ_h|, checked by central differences."""
    model = copy.deepcopy(clf.model).double()
    text, label = "a dull and boring film", "neg"
    imp = head_importance(model, clf.tokenizer, [text], [label], normalize=False, max_length=32)
    inputs = batch_inputs(clf, [text])
    y = torch.tensor([model.config.label2id[label]])

    def loss(layer: int, head: int, eps: float) -> float:
        gates = torch.ones(1, 2, 4, dtype=torch.float64)
        gates[0, layer, head] += eps
        with torch.no_grad(), head_gates(model, gates):
            logits = model(**inputs).logits
        return float(torch.nn.functional.cross_entropy(logits, y))

    eps = 1e-5
    for layer, head in [(0, 0), (1, 3)]:
        numeric = abs(loss(layer, head, eps) - loss(layer, head, -eps)) / (2 * eps)
        assert imp[layer, head] == pytest.approx(numeric, rel=1e-4, abs=1e-9)


def test_head_importance_unknown_label_is_a_user_error(clf) -> None:
    with pytest.raises(JiyiError, match="not one the model knows"):
        head_importance(clf.model, clf.tokenizer, ["good"], ["maybe"])
