"""Head pruning (physical, exact against gating, saved and reloaded) and layer distillation
(student construction, soft + hard targets, unlabeled rows, recovery after pruning)."""

from __future__ import annotations

import copy
import csv
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from conftest import make_texts
from jiyi.compress.distill import accuracy, distill, make_student, student_layers
from jiyi.compress.prune import (
    apply_layout,
    choose_heads,
    head_scores,
    load_pruned,
    prune_heads,
    pruned_layout,
)
from jiyi.data.collate import encode
from jiyi.errors import JiyiError
from jiyi.inspect.attention import head_gates
from jiyi.models import load_classifier, save_model


def read_rows(path: Path) -> tuple[list[str], list[str]]:
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    return [r["text"] for r in rows], [r["label"] for r in rows]


def logits_of(model: Any, tokenizer: Any, texts: list[str]) -> torch.Tensor:
    inputs = tokenizer(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        return model(**inputs).logits


def gates_for(heads: dict[int, list[int]], n: int, n_layers: int, n_heads: int) -> torch.Tensor:
    gates = torch.ones(n, n_layers, n_heads)  # (B, L, H)
    for layer, ids in heads.items():
        gates[:, layer, ids] = 0.0
    return gates


def tiny_classifier(layers: int = 6, heads: int = 2, seed: int = 0) -> Any:
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=50,
        hidden_size=16,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=19,
        max_position_embeddings=32,
        num_labels=2,
    )
    return BertForSequenceClassification(config).eval()


@pytest.fixture(scope="module")
def trained(trained_run: Path) -> tuple[Any, Any]:
    """The tiny run's classifier (read-only: tests deep-copy it before changing it)."""
    return load_classifier(trained_run / "model")


# ----------------------------------------------------------------------------- choose_heads


def test_choose_heads_takes_the_lowest_and_keeps_one_per_layer() -> None:
    importance = np.array(
        [
            [0.01, 0.02, 0.03, 0.04],  # the four least important heads: all of layer 0
            [0.50, 0.10, 0.90, 0.20],
        ]
    )
    assert choose_heads(importance, 0.25) == {0: [0, 1]}
    # 4 heads: layer 0's last head is skipped, layer 1's least important head taken instead
    assert choose_heads(importance, 0.5) == {0: [0, 1, 2], 1: [1]}
    # more than L * (H - 1) asked: every layer still keeps its best head
    assert choose_heads(importance, 0.99) == {0: [0, 1, 2], 1: [0, 1, 3]}
    assert choose_heads(importance, 0.0) == {}
    for bad in (-0.1, 1.0, 1.5):
        with pytest.raises(JiyiError):
            choose_heads(importance, bad)
    with pytest.raises(JiyiError):
        choose_heads(np.array([[np.nan, 1.0]]), 0.5)


# ---------------------------------------------------------------------------- prune_heads


@pytest.mark.parametrize("impl", ["sdpa", "eager"])
def test_pruned_logits_equal_gated_logits(trained: tuple[Any, Any], impl: str) -> None:
    model, tokenizer = trained
    model = copy.deepcopy(model)
    model.set_attn_implementation(impl)
    texts = [t for t, _ in make_texts(12, seed=7)]
    heads = {0: [0, 2], 1: [3]}
    with head_gates(model, gates_for(heads, len(texts), 2, 4)):
        gated = logits_of(model, tokenizer, texts)
    full = logits_of(model, tokenizer, texts)
    prune_heads(model, heads)
    pruned = logits_of(model, tokenizer, texts)
    torch.testing.assert_close(pruned, gated, atol=1e-5, rtol=0)
    assert not torch.allclose(full, gated, atol=1e-5)  # the gates did remove something


def test_pruned_shapes_attributes_and_parameter_count() -> None:
    model = tiny_classifier(layers=2, heads=4)  # hidden 16: head size 4
    before = sum(p.numel() for p in model.parameters())
    prune_heads(model, {0: [1, 3], 1: [0]})
    layer0, layer1 = model.bert.encoder.layer
    for name in ("query", "key", "value"):
        assert getattr(layer0.attention.self, name).weight.shape == (8, 16)
        assert getattr(layer0.attention.self, name).bias.shape == (8,)
        assert getattr(layer1.attention.self, name).weight.shape == (12, 16)
    assert layer0.attention.output.dense.weight.shape == (16, 8)
    assert layer0.attention.output.dense.in_features == 8
    assert layer1.attention.output.dense.weight.shape == (16, 12)
    assert (layer0.attention.self.num_attention_heads, layer0.attention.self.all_head_size) == (
        2,
        8,
    )
    assert layer1.attention.self.num_attention_heads == 3
    per_head = 3 * (4 * 16 + 4) + 16 * 4  # q/k/v rows and biases, output columns
    assert sum(p.numel() for p in model.parameters()) == before - 3 * per_head
    assert model.config.num_attention_heads == 4  # the original count stays
    assert pruned_layout(model) == {0: [1, 3], 1: [0]}
    # original numbering: pruning again composes; already-pruned ids are ignored
    prune_heads(model, {0: [1, 2]})
    assert pruned_layout(model) == {0: [1, 2, 3], 1: [0]}
    assert layer0.attention.self.query.weight.shape == (4, 16)
    with pytest.raises(JiyiError):
        prune_heads(model, {0: [0]})  # the layer's last head
    with pytest.raises(JiyiError):
        prune_heads(model, {5: [0]})


def test_save_and_load_pruned_round_trip(trained: tuple[Any, Any], tmp_path: Path) -> None:
    from transformers import AutoModelForSequenceClassification

    model, tokenizer = trained
    model = copy.deepcopy(model)
    prune_heads(model, {0: [1], 1: [0, 2]})
    texts = [t for t, _ in make_texts(10, seed=8)]
    expected = logits_of(model, tokenizer, texts)
    save_model(model, tokenizer, tmp_path / "pruned")
    config = json.loads((tmp_path / "pruned" / "config.json").read_text(encoding="utf-8"))
    assert config["jiyi_pruned_heads"] == {"0": [1], "1": [0, 2]}
    assert config["num_attention_heads"] == 4
    loaded = load_pruned(tmp_path / "pruned")
    assert not loaded.training
    torch.testing.assert_close(logits_of(loaded, tokenizer, texts), expected, atol=1e-6, rtol=0)
    # a plain from_pretrained must not quietly give a different model
    with pytest.raises((RuntimeError, ValueError)):
        AutoModelForSequenceClassification.from_pretrained(str(tmp_path / "pruned"))
    # apply_layout refuses a model that is already pruned
    with pytest.raises(JiyiError):
        apply_layout(loaded, {0: [2]})


# ---------------------------------------------------------------------------- make_student


def test_make_student_takes_evenly_spaced_layers_and_copies_them() -> None:
    assert student_layers(6, 3) == [1, 3, 5]
    assert student_layers(12, 4) == [2, 5, 8, 11]
    assert student_layers(4, 4) == [0, 1, 2, 3]
    with pytest.raises(JiyiError):
        student_layers(6, 0)
    teacher = tiny_classifier(layers=6)
    student, used = make_student(teacher, 3)
    assert used == [1, 3, 5]
    assert student.training and not teacher.training
    assert student.config.num_hidden_layers == 3 and teacher.config.num_hidden_layers == 6
    assert len(student.bert.encoder.layer) == 3
    t_state, s_state = teacher.state_dict(), student.state_dict()
    for new, old in enumerate(used):
        prefix = "bert.encoder.layer."
        for key, value in s_state.items():
            if key.startswith(f"{prefix}{new}."):
                twin = f"{prefix}{old}." + key[len(f"{prefix}{new}.") :]
                assert torch.equal(value, t_state[twin]), key
    for key, value in s_state.items():
        if not key.startswith("bert.encoder."):  # embeddings, pooler, classifier
            assert torch.equal(value, t_state[key]), key
    assert student.bert.encoder.layer[0].attention.self.query.weight.data_ptr() != (
        teacher.bert.encoder.layer[1].attention.self.query.weight.data_ptr()
    )  # copies, not shared


def test_make_student_of_a_pruned_teacher_keeps_its_layout() -> None:
    teacher = tiny_classifier(layers=4, heads=4)
    prune_heads(teacher, {1: [0], 2: [3]})
    student, used = make_student(teacher, 2)
    assert used == [1, 3]
    assert pruned_layout(student) == {0: [0]}
    assert student.bert.encoder.layer[0].attention.self.query.weight.shape == (12, 16)
    ids = torch.tensor([[2, 5, 7, 3]])
    student.eval()
    with torch.no_grad():
        assert torch.isfinite(student(input_ids=ids).logits).all()


# ---------------------------------------------------------------------------------- distill


def test_distill_student_agrees_with_teacher(trained: tuple[Any, Any], tiny_data_dir: Path) -> None:
    teacher, tokenizer = trained
    texts, labels = read_rows(tiny_data_dir / "train.csv")
    val_texts, val_labels = read_rows(tiny_data_dir / "validation.csv")
    student, used = make_student(teacher, 1)
    # the task is so easy that the copied head already agrees; zero it so that the agreement
    # has to be learnt from the teacher
    with torch.no_grad():
        student.classifier.weight.zero_()
        student.classifier.bias.zero_()
    check = [t for t, _ in make_texts(60, seed=4)]
    teacher_says = logits_of(teacher, tokenizer, check).argmax(-1)
    student.eval()
    assert (logits_of(student, tokenizer, check).argmax(-1) == teacher_says).float().mean() <= 0.6
    student.train()
    events: list[dict] = []
    result = distill(
        teacher,
        student,
        tokenizer,
        texts,
        labels,
        val_texts=val_texts,
        val_labels=val_labels,
        epochs=3,
        lr=3e-3,
        batch_size=16,
        max_length=32,
        log=events.append,
    )
    assert used == [1] and result["teacher_layers"] == [1]
    assert result["steps"] == 3 * 15 and result["epochs"] == 3
    assert 0.0 <= result["best_val_accuracy"] <= 1.0
    assert [h["epoch"] for h in result["history"]] == [0, 1, 2, 3]
    assert len(events) == 4
    assert not student.training
    agree = logits_of(student, tokenizer, check).argmax(-1) == teacher_says
    assert agree.float().mean() >= 0.8
    # the returned student is the best state: its val accuracy is the reported one
    enc = encode(tokenizer, val_texts, None, 32)
    ids = torch.tensor([teacher.config.label2id[y] for y in val_labels])
    acc = accuracy(student, enc, ids, pad_id=tokenizer.pad_token_id, multilabel=False)
    assert acc == pytest.approx(result["best_val_accuracy"])


def test_distill_unlabeled_rows_and_determinism(
    trained: tuple[Any, Any], tiny_data_dir: Path
) -> None:
    teacher, tokenizer = trained
    texts, labels = read_rows(tiny_data_dir / "train.csv")
    texts, labels = texts[:96], labels[:96]
    partly = [y if i % 2 == 0 else None for i, y in enumerate(labels)]
    val_texts, val_labels = read_rows(tiny_data_dir / "validation.csv")
    kwargs = dict(val_texts=val_texts, val_labels=val_labels, epochs=1, lr=1e-3, max_length=32)
    runs, losses = [], []
    for rows in (partly, partly, None):
        student, _ = make_student(teacher, 1)
        result = distill(teacher, student, tokenizer, texts, rows, **kwargs)
        losses.append(result["history"][-1]["train_loss"])
        assert np.isfinite(losses[-1])
        runs.append(student.state_dict())
    for key in runs[0]:
        assert torch.equal(runs[0][key], runs[1][key]), key  # same seed, same student
    assert losses[0] == losses[1]
    # labels matter: the loss trained on differs (the returned best states may both be the
    # initial student when one epoch does not beat its validation accuracy)
    assert losses[0] != losses[2]


def test_recovery_after_pruning_keeps_validation_accuracy(
    trained: tuple[Any, Any], tiny_data_dir: Path
) -> None:
    teacher, tokenizer = trained
    val_texts, val_labels = read_rows(tiny_data_dir / "validation.csv")
    texts, labels = read_rows(tiny_data_dir / "train.csv")
    scores = head_scores(teacher, tokenizer, val_texts, val_labels, max_length=32, batch_size=32)
    assert scores.shape == (2, 4)
    heads = choose_heads(scores, 0.5)
    assert sum(len(h) for h in heads.values()) == 4
    pruned = copy.deepcopy(teacher)
    prune_heads(pruned, heads)
    with pytest.raises(JiyiError):
        head_scores(pruned, tokenizer, val_texts, val_labels, max_length=32, batch_size=32)
    enc = encode(tokenizer, val_texts, None, 32)
    ids = torch.tensor([teacher.config.label2id[y] for y in val_labels])
    before = accuracy(pruned, enc, ids, pad_id=tokenizer.pad_token_id, multilabel=False)
    result = distill(
        teacher,
        pruned,
        tokenizer,
        texts,
        labels,
        val_texts=val_texts,
        val_labels=val_labels,
        epochs=2,
        lr=1e-3,
        batch_size=16,
        max_length=32,
    )
    assert result["history"][0]["val_accuracy"] == pytest.approx(before)
    assert result["teacher_layers"] == [0, 1]
    assert result["best_val_accuracy"] >= before - 0.05
    assert pruned_layout(pruned) == heads  # training did not change the shapes
    after = accuracy(pruned, enc, ids, pad_id=tokenizer.pad_token_id, multilabel=False)
    assert after == pytest.approx(result["best_val_accuracy"])


def test_distill_multilabel_uses_sigmoid_targets(trained: tuple[Any, Any]) -> None:
    teacher, tokenizer = trained
    teacher = copy.deepcopy(teacher)
    teacher.config.problem_type = "multi_label_classification"
    rows = make_texts(40, seed=9)
    texts = [t for t, _ in rows]
    labels: list[Any] = [[y] if i % 3 else None for i, (_, y) in enumerate(rows)]
    student, _ = make_student(teacher, 1)
    result = distill(
        teacher,
        student,
        tokenizer,
        texts,
        labels,
        val_texts=texts[:10],
        val_labels=[[y] for _, y in rows[:10]],
        epochs=1,
        lr=1e-3,
        max_length=32,
    )
    assert np.isfinite(result["history"][-1]["train_loss"])
    assert 0.0 <= result["best_val_accuracy"] <= 1.0
