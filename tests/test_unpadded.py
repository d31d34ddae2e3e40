"""jiyi.unpadded: forward passes on real tokens only give the encoder's own outputs."""

from __future__ import annotations

import copy

import pytest
import torch
from transformers import (
    BertForQuestionAnswering,
    BertForSequenceClassification,
    BertForTokenClassification,
    DistilBertConfig,
    DistilBertForSequenceClassification,
)

from conftest import tiny_bert_config
from jiyi import unpadded
from jiyi.unpadded import AttentionPlan, enable, token_mask, unpadding


def tiny_bert(
    cls: type = BertForSequenceClassification, labels: int = 3, **extra
) -> torch.nn.Module:
    torch.manual_seed(0)
    return cls(tiny_bert_config(50, num_labels=labels, **extra)).eval()


def batch(lengths: list[int], width: int | None = None) -> dict[str, torch.Tensor]:
    """Right-padded ids (pad 0) for texts of these lengths, in this order."""
    width = width or max(lengths)
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(1, 50, (len(lengths), width), generator=g)
    mask = (torch.arange(width)[None, :] < torch.tensor(lengths)[:, None]).long()
    return {"input_ids": ids * mask, "attention_mask": mask}


def count_unpadded_passes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """A list that gains a 1 each time a forward pass takes the unpadded path."""
    calls: list[int] = []
    real = unpadded.run_unpadded
    monkeypatch.setattr(unpadded, "run_unpadded", lambda *a: calls.append(1) or real(*a))
    return calls


# 19 texts: three attention groups, lengths out of order, ties, a text of one token, a pass of
# width 40 whose longest text is 37 (every text padded)
LENGTHS = [5, 37, 1, 12, 12, 30, 2, 8, 19, 25, 3, 3, 33, 9, 14, 6, 21, 4, 16]


@pytest.mark.parametrize("cls", [BertForSequenceClassification, BertForTokenClassification])
def test_same_outputs_at_real_tokens(cls: type) -> None:
    model = tiny_bert(cls)
    inputs = batch(LENGTHS, width=40)
    with torch.inference_mode():
        plain = model(**inputs).logits
        assert enable(model)
        assert type(model.bert.encoder).__name__ == "UnpaddedBertEncoder"
        with unpadding():
            fast = model(**inputs).logits
        again = model(**inputs).logits  # outside the context: the encoder's own forward
    if plain.dim() == 3:  # token logits: padded positions differ by design (zeros inside)
        keep = inputs["attention_mask"].bool()
        plain, fast, again = plain[keep], fast[keep], again[keep]
    torch.testing.assert_close(fast, plain, rtol=1e-5, atol=1e-5)
    assert torch.equal(again, plain)


def test_under_bf16_autocast_and_in_bf16(monkeypatch: pytest.MonkeyPatch) -> None:
    """A caller's own `torch.autocast` (bfloat16 matrix products, float32 normalisation) and a
    model cast to bfloat16 (`jiyi compress --method bf16`) both take the unpadded path and give
    the encoder's own outputs, to bfloat16's precision."""
    calls = count_unpadded_passes(monkeypatch)
    model = tiny_bert()
    inputs = batch(LENGTHS, width=40)
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        plain = model(**inputs).logits
        enable(model)
        with unpadding():
            fast = model(**inputs).logits
    torch.testing.assert_close(fast, plain, rtol=0.05, atol=0.05)
    half = copy.deepcopy(model).to(torch.bfloat16)
    with torch.inference_mode():
        with unpadding():
            fast = half(**inputs).logits
        own = half(**inputs).logits  # outside the context: the encoder's own forward
    assert fast.dtype == torch.bfloat16
    torch.testing.assert_close(fast, own, rtol=0.05, atol=0.05)
    assert calls == [1, 1]  # once under autocast, once in bfloat16


def test_question_answering_with_segments() -> None:
    model = tiny_bert(BertForQuestionAnswering, labels=2)
    inputs = batch(LENGTHS[:10])
    inputs["token_type_ids"] = (torch.arange(inputs["input_ids"].shape[1]) >= 3).long().expand(
        10, -1
    ) * inputs["attention_mask"]  # the first three tokens: the question; then the context
    with torch.inference_mode():
        plain = model(**inputs)
        enable(model)
        with unpadding():
            fast = model(**inputs)
    keep = inputs["attention_mask"].bool()
    for name in ("start_logits", "end_logits"):
        torch.testing.assert_close(fast[name][keep], plain[name][keep], rtol=1e-5, atol=1e-5)


def test_takes_the_unpadded_path(monkeypatch: pytest.MonkeyPatch) -> None:
    model = tiny_bert()
    enable(model)
    calls = count_unpadded_passes(monkeypatch)
    inputs = batch([3, 7])
    with torch.inference_mode(), unpadding():
        model(**inputs)
    assert calls == [1]
    with torch.inference_mode(), unpadding():  # 1 position in 40 padded: not worth it
        model(**batch([10, 10, 10, 9]))
    with torch.inference_mode(), unpadding():  # hidden states asked for (jiyi embed): own forward
        assert len(model(**inputs, output_hidden_states=True).hidden_states) == 3
    with torch.inference_mode():  # outside the context: own forward
        model(**inputs)
    model.gradient_checkpointing_enable()
    model.train()
    with unpadding():  # training with gradient checkpointing: own forward
        model(**inputs).logits.sum().backward()
    assert calls == [1]
    model.gradient_checkpointing_disable()
    with unpadding():  # training (dropout, gradients): unpadded
        model(**inputs).logits.sum().backward()
    assert calls == [1, 1]


@pytest.mark.parametrize("cls", [BertForSequenceClassification, BertForTokenClassification])
def test_training_step_same_loss_and_gradients(cls: type, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without dropout a training step gives the encoder's own loss and gradients."""
    model = tiny_bert(cls, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0).train()
    inputs = batch(LENGTHS, width=40)
    labels = torch.arange(len(LENGTHS)) % 3
    if cls is BertForTokenClassification:
        labels = torch.where(inputs["attention_mask"].bool(), labels[:, None], -100)

    def step() -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        model.zero_grad()
        loss = model(**inputs, labels=labels).loss
        loss.backward()
        return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}

    plain_loss, plain_grads = step()
    enable(model)
    calls: list[int] = []
    real = unpadded.run_unpadded
    monkeypatch.setattr(unpadded, "run_unpadded", lambda *a: calls.append(1) or real(*a))
    with unpadding():
        loss, grads = step()
    assert calls == [1]
    torch.testing.assert_close(loss, plain_loss, rtol=1e-5, atol=1e-6)
    assert grads.keys() == plain_grads.keys()
    for name, grad in grads.items():
        torch.testing.assert_close(grad, plain_grads[name], rtol=1e-4, atol=1e-6, msg=name)


def test_training_dropout_is_applied() -> None:
    model = tiny_bert(hidden_dropout_prob=0.5, attention_probs_dropout_prob=0.5)
    enable(model)
    inputs = batch(LENGTHS, width=40)
    with torch.no_grad(), unpadding():
        model.eval()
        steady = [model(**inputs).logits for _ in range(2)]
        model.train()
        noisy = [model(**inputs).logits for _ in range(2)]
    assert torch.equal(*steady)
    assert not torch.allclose(*noisy)


def test_no_padding_and_state_dict_unchanged() -> None:
    model = tiny_bert()
    keys = list(model.state_dict())
    inputs = batch([6, 6, 6])
    with torch.inference_mode():
        plain = model(**inputs).logits
        enable(model)
        with unpadding():
            fast = model(**inputs).logits
    torch.testing.assert_close(fast, plain, rtol=1e-5, atol=1e-5)
    assert list(model.state_dict()) == keys
    twin = copy.deepcopy(model)  # a copy (as quantization makes) keeps the path and its weights
    assert type(twin.bert.encoder) is type(model.bert.encoder)
    with torch.inference_mode(), unpadding():
        torch.testing.assert_close(twin(**inputs).logits, fast)


def test_other_encoders_keep_their_forward() -> None:
    torch.manual_seed(0)
    config = DistilBertConfig(vocab_size=50, dim=32, n_layers=1, n_heads=4, hidden_dim=37)
    distil = DistilBertForSequenceClassification(config).eval()
    assert not enable(distil)
    assert not enable(object())
    decoder = tiny_bert(is_decoder=True)
    assert not enable(decoder)


def test_token_mask() -> None:
    two_d = torch.tensor([[1, 1, 0], [1, 1, 1]])
    assert token_mask(two_d, 2, 3).tolist() == [[True, True, False], [True, True, True]]
    additive = torch.zeros(2, 1, 3, 3)
    additive[0, :, :, 2] = torch.finfo(torch.float32).min
    assert token_mask(additive, 2, 3).tolist() == [[True, True, False], [True, True, True]]
    boolean = additive == 0
    assert token_mask(boolean, 2, 3).tolist() == [[True, True, False], [True, True, True]]
    assert token_mask(None, 1, 2).tolist() == [[True, True]]
    assert token_mask(torch.tensor([[0, 1, 1]]), 1, 3) is None  # left padding: not this path
    assert token_mask(torch.tensor([[0, 0]]), 1, 2) is None  # an empty text
    assert token_mask(two_d, 3, 3) is None  # not the batch's shape


def test_attention_plan_covers_every_token_once() -> None:
    lengths = torch.tensor(LENGTHS)
    plan = AttentionPlan.of(lengths)
    assert [n for n, _ in plan.shapes] == [8, 8, 3]
    assert [w for _, w in plan.shapes] == [37, 12, 3]  # each group as wide as its longest text
    assert plan.sizes == [n * w for n, w in plan.shapes] and sum(plan.sizes) == len(plan.gather)
    tokens = int(lengths.sum())
    assert sorted(plan.order.tolist()) == sorted(set(plan.order.tolist()))  # one slot each
    assert torch.equal(plan.gather[plan.order], torch.arange(tokens))  # each token's own slot
    padded = torch.ones(len(plan.gather), dtype=torch.bool)
    padded[plan.order] = False
    assert (plan.gather[padded] == 0).all()  # padded slots read token 0, hidden by the masks
    for mask, (n, w) in zip(plan.masks, plan.shapes, strict=True):
        assert mask is None or tuple(mask.shape) == (n, 1, 1, w)


def test_attend_with_dropout_is_torchs_attention() -> None:
    """The written-out attention (taken with dropout on the CPU) gives torch's fused result and
    gradients when its dropout keeps everything, and drops whole probabilities otherwise."""
    torch.manual_seed(0)
    q, k, v = (torch.randn(3, 4, 7, 8, requires_grad=True) for _ in range(3))
    mask = torch.arange(7)[None, None, None, :] < torch.tensor([7, 4, 1])[:, None, None, None]

    def run(f) -> tuple[torch.Tensor, list[torch.Tensor]]:
        out = f()
        grads = torch.autograd.grad((out * torch.linspace(-1, 1, 8)).sum(), (q, k, v))
        return out, list(grads)

    ref, ref_grads = run(
        lambda: torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=0.3)
    )
    out, grads = run(lambda: unpadded.attend(q, k, v, mask, 1e-9, 0.3))  # rounds to keep all
    torch.testing.assert_close(out, ref)
    for g, r in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(g, r)
    dropped = unpadded.attend(q, k, v, mask, 0.5, 0.3)
    assert dropped.shape == ref.shape and not torch.allclose(dropped, ref)


def test_packed_rows_come_in_few_sizes() -> None:
    """The linear layers see the packed tokens rounded up by `padded_rows` (oneDNN compiles a
    kernel per shape), and the extra rows change no real token's output."""
    model = tiny_bert(BertForTokenClassification)
    rows: list[int] = []
    model.bert.encoder.layer[0].intermediate.dense.register_forward_hook(
        lambda m, args, out: rows.append(args[0].shape[0])
    )
    inputs = batch(LENGTHS, width=40)
    with torch.inference_mode():
        plain = model(**inputs).logits
        enable(model)
        with unpadding():
            fast = model(**inputs).logits
    assert sum(LENGTHS) == 260 and rows == [19, 272]  # (19, 40, h) padded; 260 tokens + 12 rows
    keep = inputs["attention_mask"].bool()
    torch.testing.assert_close(fast[keep], plain[keep], rtol=1e-5, atol=1e-5)
    assert [unpadded.padded_rows(n) for n in (16, 260, 272, 273, 4000)] == [16, 272, 272, 288, 4096]
