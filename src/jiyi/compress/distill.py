"""Knowledge distillation: a shallower student taught by the fine-tuned teacher's soft targets.

    student, used = make_student(teacher, 3)       # layers 1, 3, 5 of a 6-layer teacher
    result = distill(teacher, student, tokenizer, texts, labels,
                     val_texts=val_texts, val_labels=val_labels)

The loss of a labelled row is alpha * T^2 * KL(p_teacher^T || p_student^T) + (1 - alpha) *
CE(student, label) (Hinton et al. 2015: the T^2 keeps the soft term's gradients on the scale
of the hard term's as T grows); a row without a label (None: an unlabeled text) has only the
soft term, alpha * T^2 * KL, so it teaches what the teacher thinks and nothing else. Multi-label
teachers use per-label sigmoids: T^2 * BCE(sigmoid(s/T), sigmoid(t/T)) and BCE with the labels.

The same `distill` is the recovery fine-tune after head pruning: teacher = the unpruned model,
student = the pruned one. The student's starting point is evaluated too and counts as a
candidate for the best state, so a recovery never returns a worse validation accuracy than the
pruned model had. torch is imported inside the functions.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from jiyi.errors import JiyiError

if TYPE_CHECKING:
    import torch


def student_layers(n_teacher: int, n_layers: int) -> list[int]:
    """Evenly spaced teacher layers, the top one always kept (every k-th layer when N divides L).

    >>> student_layers(6, 3)
    [1, 3, 5]
    >>> student_layers(12, 4)
    [2, 5, 8, 11]
    """
    if not 1 <= n_layers <= n_teacher:
        raise JiyiError(
            f"--layers {n_layers}: the student needs between 1 and {n_teacher} layers "
            f"(the teacher has {n_teacher})."
        )
    return [(i + 1) * n_teacher // n_layers - 1 for i in range(n_layers)]


def make_student(teacher: Any, n_layers: int) -> tuple[Any, list[int]]:
    """A student with `n_layers` encoder layers copied from `teacher` (evenly spaced, the top
    layer always among them); embeddings, pooler and classifier copied too. A pruned teacher's
    head layout carries over to the layers taken. Returns (student in train mode, teacher layers).
    """
    from jiyi.compress.prune import LAYOUT_KEY, apply_layout, encoder_layers, pruned_layout

    layers = encoder_layers(teacher)
    used = student_layers(len(layers), n_layers)
    config = copy.deepcopy(teacher.config)
    config.num_hidden_layers = n_layers
    teacher_layout = pruned_layout(teacher)
    layout = {new: teacher_layout[old] for new, old in enumerate(used) if old in teacher_layout}
    setattr(config, LAYOUT_KEY, {})
    student = type(teacher)(config)
    apply_layout(student, layout)

    prefix = _layer_prefix(teacher)
    rename = {old: new for new, old in enumerate(used)}
    state = {}
    for key, tensor in teacher.state_dict().items():
        if key.startswith(prefix):
            index, rest = key[len(prefix) :].split(".", 1)
            if int(index) not in rename:
                continue
            key = f"{prefix}{rename[int(index)]}.{rest}"
        state[key] = tensor.detach().clone()
    param = next(teacher.parameters())
    student.to(device=param.device, dtype=param.dtype)
    student.load_state_dict(state, strict=True)
    student.jiyi_teacher_layers = list(used)  # provenance for distill's report; not saved
    student.train()
    return student, used


def _layer_prefix(model: Any) -> str:
    """The state-dict prefix of the encoder layers, e.g. "bert.encoder.layer."."""
    from jiyi.compress.prune import encoder_layers

    first = encoder_layers(model)[0]
    for name, module in model.named_modules():
        if module is first:
            return name.rsplit(".", 1)[0] + "."
    raise JiyiError(f"{type(model).__name__}: could not locate the encoder layers.")


def distill(
    teacher: Any,
    student: Any,
    tokenizer: Any,
    texts: Sequence[str],
    labels: Sequence[Any] | None,
    *,
    val_texts: Sequence[str] | None,
    val_labels: Sequence[Any] | None,
    epochs: float = 3,
    temperature: float = 2.0,
    alpha: float = 0.5,
    lr: float = 1e-4,
    batch_size: int = 32,
    max_length: int = 128,
    seed: int = 0,
    weight_decay: float = 0.01,
    warmup_ratio: float = 0.06,
    max_grad_norm: float = 1.0,
    truncation: str = "head+tail",
    log: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Train `student` (in place) on `teacher`'s soft targets and the hard labels.

    `labels`: one per text (a class id or name; for multi-label, names or a 0/1 vector), None
    for an unlabeled text, or `labels=None` when no text has one (soft targets only). The
    teacher's logits are computed once up front. Batches are grouped by length; AdamW without
    decay on biases and LayerNorm, linear warmup then decay, as `jiyi train`. Validation
    accuracy (exact match at 0.5 for multi-label) is measured before training and after every
    epoch; the best state is loaded back into the student, which is left in eval mode.
    Deterministic for a given seed.

    Returns {"epochs", "steps", "best_val_accuracy", "best_epoch", "history", "teacher_layers",
    "seconds"}. "teacher_layers": the layers `make_student` took, all of them for a student as
    deep as the teacher (a pruned copy), None when unknown. "best_val_accuracy" is None without
    validation texts (the last state is kept then).
    """
    import torch

    from jiyi.data.collate import encode, length_grouped_batches, pad_batch
    from jiyi.loop import linear_schedule, param_groups

    t_start = time.perf_counter()
    texts = list(texts)
    if not texts:
        raise JiyiError("distillation needs at least one training text.")
    if labels is not None and len(labels) != len(texts):
        raise JiyiError(f"distillation: {len(texts)} texts but {len(labels)} labels.")
    if not epochs > 0 or not temperature > 0 or not 0.0 <= alpha <= 1.0 or batch_size < 1:
        raise JiyiError(
            f"distillation: need epochs > 0, temperature > 0, 0 <= alpha <= 1 and batch size "
            f">= 1 (got {epochs}, {temperature}, {alpha}, {batch_size})."
        )
    if teacher.config.num_labels != student.config.num_labels:
        raise JiyiError(
            f"teacher has {teacher.config.num_labels} labels, student "
            f"{student.config.num_labels}; they must share the label set."
        )
    multilabel = teacher.config.problem_type == "multi_label_classification"
    say = log or (lambda _event: None)
    pad_id = tokenizer.pad_token_id or 0

    enc = encode(tokenizer, texts, None, max_length, truncation)
    soft = teacher_logits(teacher, enc, pad_id=pad_id, batch_size=max(batch_size, 64))  # (N, C)
    rows = list(labels) if labels is not None else [None] * len(texts)
    targets, has_label = _targets(student.config, rows, multilabel)  # (N,)|(N, C), (N,) bool
    val: tuple[Any, torch.Tensor] | None = None
    if val_texts:
        if val_labels is None or len(val_labels) != len(val_texts):
            raise JiyiError("distillation: validation texts need one label each.")
        val_rows = list(val_labels)
        if any(v is None for v in val_rows):
            raise JiyiError("distillation: every validation text needs a label.")
        val_enc = encode(tokenizer, list(val_texts), None, max_length, truncation)
        val = (val_enc, _targets(student.config, val_rows, multilabel)[0])

    torch.manual_seed(seed)
    device = next(student.parameters()).device
    per_epoch = math.ceil(len(texts) / batch_size)
    total = max(1, math.ceil(epochs * per_epoch))
    optimizer = torch.optim.AdamW(param_groups(student, weight_decay), lr=lr)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, linear_schedule(int(warmup_ratio * total), total)
    )

    def evaluate() -> float | None:
        if val is None:
            return None
        return accuracy(student, val[0], val[1], pad_id=pad_id, multilabel=multilabel)

    best_acc = evaluate()
    best_state = _snapshot(student) if best_acc is not None else None
    best_epoch: float = 0
    history: list[dict[str, Any]] = [{"epoch": 0, "step": 0, "val_accuracy": best_acc}]
    say({"event": "distill_eval", **history[0]})
    step, epoch = 0, 0
    student.train()
    while step < total:
        batches = length_grouped_batches(enc.lengths, batch_size, seed, epoch)
        loss_sum, n_batches = 0.0, 0
        for batch in batches:
            inputs = {k: v.to(device) for k, v in pad_batch(enc, batch, pad_id).items()}
            logits = student(**inputs).logits.float()  # (B, C)
            loss = distill_loss(
                logits,
                soft[batch].to(device),
                targets[batch].to(device),
                has_label[batch].to(device),
                temperature=temperature,
                alpha=alpha,
                multilabel=multilabel,
            )
            if not torch.isfinite(loss):
                raise JiyiError(
                    f"The distillation loss became {loss.item()} at step {step}; lower the "
                    f"learning rate (now {lr})."
                )
            loss.backward()
            if max_grad_norm > 0:
                torch.nn.utils.clip_grad_norm_(student.parameters(), max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            loss_sum += loss.item()
            n_batches += 1
            if step >= total:
                break
        epoch_done = epoch + n_batches / len(batches)
        acc = evaluate()
        entry = {
            "epoch": round(epoch_done, 4),
            "step": step,
            "train_loss": loss_sum / max(1, n_batches),
            "val_accuracy": acc,
            "lr": scheduler.get_last_lr()[0],
        }
        history.append(entry)
        say({"event": "distill_epoch", **entry})
        if acc is not None and (best_acc is None or acc > best_acc):
            best_acc, best_state, best_epoch = acc, _snapshot(student), entry["epoch"]
        student.train()
        epoch += 1
    if best_state is not None:
        student.load_state_dict(best_state)
    else:
        best_epoch = history[-1]["epoch"]
    student.eval()
    return {
        "epochs": history[-1]["epoch"],
        "steps": step,
        "best_val_accuracy": best_acc,
        "best_epoch": best_epoch,
        "history": history,
        "teacher_layers": _teacher_layers(teacher, student),
        "seconds": time.perf_counter() - t_start,
    }


def distill_loss(
    logits: torch.Tensor,
    teacher: torch.Tensor,
    targets: torch.Tensor,
    has_label: torch.Tensor,
    *,
    temperature: float,
    alpha: float,
    multilabel: bool,
) -> torch.Tensor:
    """Mean over the batch of alpha * T^2 * soft + (1 - alpha) * hard (hard only where labelled).

    logits, teacher: (B, C); targets: (B,) class ids or (B, C) 0/1; has_label: (B,) bool.
    """
    import torch
    import torch.nn.functional as F

    t = float(temperature)
    if multilabel:
        soft = F.binary_cross_entropy_with_logits(
            logits / t, torch.sigmoid(teacher / t), reduction="none"
        ).mean(dim=-1)  # (B,)
        hard = F.binary_cross_entropy_with_logits(logits, targets.float(), reduction="none").mean(
            dim=-1
        )  # (B,)
    else:
        soft = F.kl_div(
            F.log_softmax(logits / t, dim=-1),
            F.log_softmax(teacher / t, dim=-1),
            reduction="none",
            log_target=True,
        ).sum(dim=-1)  # (B,)
        hard = F.cross_entropy(logits, targets.clamp(min=0), reduction="none")  # (B,)
    hard = torch.where(has_label, hard, torch.zeros_like(hard))
    return (alpha * t * t * soft + (1.0 - alpha) * hard).mean()


def teacher_logits(model: Any, enc: Any, *, pad_id: int, batch_size: int = 64) -> torch.Tensor:
    """Logits of every encoded text, input order: (N, C) float32 on the CPU; eval mode, no grad,
    the model's train/eval mode restored."""
    import torch

    from jiyi.data.collate import pad_batch, sorted_batches

    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    out = torch.zeros(len(enc), int(model.config.num_labels), dtype=torch.float32)
    with torch.inference_mode():
        for batch in sorted_batches(enc.lengths, batch_size):
            inputs = {k: v.to(device) for k, v in pad_batch(enc, batch, pad_id).items()}
            out[batch] = model(**inputs).logits.float().cpu()
    model.train(was_training)
    return out


def accuracy(
    model: Any, enc: Any, targets: torch.Tensor, *, pad_id: int, multilabel: bool
) -> float:
    """Accuracy of `model` on encoded texts: argmax, or exact match of sigmoid >= 0.5."""
    import torch

    logits = teacher_logits(model, enc, pad_id=pad_id)
    if multilabel:
        right = ((torch.sigmoid(logits) >= 0.5).float() == targets.float()).all(dim=-1)
    else:
        right = logits.argmax(dim=-1) == targets
    return float(right.float().mean()) if len(right) else 0.0


def _teacher_layers(teacher: Any, student: Any) -> list[int] | None:
    from jiyi.compress.prune import encoder_layers

    used = getattr(student, "jiyi_teacher_layers", None)
    if used is not None:
        return list(used)
    depth = len(encoder_layers(student))
    return list(range(depth)) if depth == len(encoder_layers(teacher)) else None


def _snapshot(model: Any) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _targets(config: Any, rows: list[Any], multilabel: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Labels -> (targets, has_label): class ids (N,) with -1 where missing, or 0/1 (N, C)."""
    import torch

    label2id = {str(k): int(v) for k, v in (config.label2id or {}).items()}
    n_classes = int(config.num_labels)

    def class_id(value: Any) -> int:
        if isinstance(value, int | np.integer) and not isinstance(value, bool):
            if not 0 <= int(value) < n_classes:
                raise JiyiError(f"distillation: class id {value} outside 0..{n_classes - 1}.")
            return int(value)
        if str(value) not in label2id:
            raise JiyiError(
                f"distillation: label {value!r} is not one the model knows ({', '.join(label2id)})."
            )
        return label2id[str(value)]

    has_label = torch.tensor([v is not None for v in rows], dtype=torch.bool)
    if not multilabel:
        ids = [-1 if v is None else class_id(v) for v in rows]
        return torch.tensor(ids, dtype=torch.long), has_label
    out = torch.zeros(len(rows), n_classes)
    for i, value in enumerate(rows):
        if value is None:
            continue
        values = [value] if isinstance(value, str) else list(value)
        if len(values) == n_classes and all(not isinstance(v, str) and v in (0, 1) for v in values):
            out[i] = torch.tensor([float(v) for v in values])  # already a 0/1 vector
        else:
            for v in values:
                out[i, class_id(v)] = 1.0
    return out, has_label
