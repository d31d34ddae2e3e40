"""jiyi.dropout: torch's dropout contract with a cheaper mask, in every training run."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import BertForSequenceClassification

from conftest import tiny_bert_config, train_argv
from jiyi import dropout as fast
from jiyi.dropout import Dropout, dropout, enable, keep_mask


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_keep_mask_rate_in_every_lane(p: float) -> None:
    """Each of the four 16-bit lanes of an int64 draw keeps 1 - p (a sign bit left at 0 would
    keep every element of one lane in four for p < 0.5)."""
    torch.manual_seed(0)
    mask = keep_mask((250_000, 4), p)  # column j: lane j of each draw
    assert mask.dtype == torch.bool and mask.shape == (250_000, 4)
    rates = mask.float().mean(0)
    assert torch.allclose(rates, torch.full((4,), 1 - p), atol=0.005), rates
    odd = keep_mask((3, 5, 7), p)  # element counts not a multiple of 4
    assert odd.shape == (3, 5, 7)


def test_dropout_scales_kept_values_and_masks_the_gradient() -> None:
    torch.manual_seed(0)
    x = torch.randn(64, 48, requires_grad=True)
    y = dropout(x, 0.25)
    kept = y != 0
    torch.testing.assert_close(y[kept], x.detach()[kept] / 0.75)
    assert 0.15 < 1 - kept.float().mean() < 0.35
    y.sum().backward()
    torch.testing.assert_close(x.grad, kept.float() / 0.75)


def test_dropout_contract() -> None:
    x = torch.randn(8, 8)
    assert dropout(x, 0.3, training=False) is x
    assert dropout(x, 0.0) is x
    assert torch.equal(dropout(x, 1.0), torch.zeros_like(x))
    assert dropout(x.bfloat16(), 0.3).dtype == torch.bfloat16
    torch.manual_seed(3)
    first = dropout(x, 0.3)
    torch.manual_seed(3)
    assert torch.equal(dropout(x, 0.3), first)  # the global generator: --seed reproduces runs


def test_enable_swaps_the_models_dropout_layers() -> None:
    torch.manual_seed(0)
    config = tiny_bert_config(50, num_labels=2, hidden_dropout_prob=0.5)
    model = BertForSequenceClassification(config).eval()
    keys = list(model.state_dict())
    ids = torch.randint(1, 50, (4, 9))
    with torch.no_grad():
        before = model(input_ids=ids).logits
        plain = sum(type(m) is torch.nn.Dropout for m in model.modules())
        assert enable(model) == plain > 0
        assert enable(model) == 0  # already swapped
        assert not any(type(m) is torch.nn.Dropout for m in model.modules())
        assert list(model.state_dict()) == keys
        torch.testing.assert_close(model(input_ids=ids).logits, before)  # eval: no dropout
        model.train()
        noisy = [model(input_ids=ids).logits for _ in range(2)]
    assert not torch.allclose(*noisy)
    assert isinstance(model.dropout, Dropout) and model.dropout.p == 0.5


def test_training_runs_draw_the_cheaper_masks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tiny_model_dir: Path, tiny_data_dir: Path
) -> None:
    from jiyi.cli import main

    calls: list[int] = []
    real = fast.keep_mask
    monkeypatch.setattr(fast, "keep_mask", lambda *a, **k: calls.append(1) or real(*a, **k))
    assert main(train_argv(tiny_model_dir, tiny_data_dir, tmp_path / "run")) == 0
    assert calls  # the model's dropout layers and the unpadded attention's
