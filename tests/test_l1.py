"""--l1 and --l1-prox: the penalty, the weights it applies to, its gradient under accumulation,
and end to end on the tiny model (shrinkage, exact zeros, what metrics.jsonl and the summary
report)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from conftest import train_argv
from jiyi.cli import main
from jiyi.loop import decay_split, l1_penalty, soft_threshold_, weight_sparsity


class Tiny(torch.nn.Module):
    """A dense layer and a LayerNorm, named as in BERT."""

    def __init__(self) -> None:
        super().__init__()
        self.dense = torch.nn.Linear(2, 3)
        self.LayerNorm = torch.nn.LayerNorm(3)


def test_penalty_equals_a_hand_computation_and_skips_biases_and_layernorm() -> None:
    model = Tiny()
    with torch.no_grad():
        model.dense.weight.copy_(torch.tensor([[1.0, -2.0], [0.5, 0.0], [-0.25, 3.0]]))
        model.dense.bias.fill_(100.0)  # would dominate the penalty were it included
        model.LayerNorm.weight.fill_(50.0)
    penalised, rest = decay_split(model)
    assert penalised == [model.dense.weight]
    assert {id(p) for p in rest} == {
        id(model.dense.bias),
        id(model.LayerNorm.weight),
        id(model.LayerNorm.bias),
    }
    # 0.1 * (1 + 2 + 0.5 + 0 + 0.25 + 3) = 0.675
    assert l1_penalty(penalised, 0.1).item() == pytest.approx(0.675)
    assert l1_penalty(penalised, 0.0).item() == 0.0


def test_bert_penalises_weight_matrices_only(tiny_model_dir: Path) -> None:
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(str(tiny_model_dir), num_labels=2)
    names = {id(p): n for n, p in model.named_parameters()}
    penalised, rest = decay_split(model)
    assert penalised and all(
        p.ndim == 2 and "LayerNorm" not in names[id(p)] and not names[id(p)].endswith(".bias")
        for p in penalised
    )
    assert all(p.ndim == 1 for p in rest)  # every bias and LayerNorm weight of BERT
    assert len(penalised) + len(rest) == len(names)


def test_soft_threshold_and_sparsity_by_hand() -> None:
    model = Tiny()
    with torch.no_grad():
        model.dense.weight.copy_(torch.tensor([[0.5, -0.05], [0.0005, 0.2], [-0.15, 0.1]]))
    soft_threshold_(decay_split(model)[0], 0.1)
    expected = torch.tensor([[0.4, 0.0], [0.0, 0.1], [-0.05, 0.0]])
    torch.testing.assert_close(model.dense.weight.detach(), expected)
    with torch.no_grad():
        model.dense.weight[1, 1] = 0.0005  # near zero, not exactly zero
    assert weight_sparsity(model) == {
        "threshold": 1e-3,
        "near_zero": 4 / 6,
        "exact_zero": 3 / 6,
        "n_weights": 6,
    }


@pytest.mark.parametrize("grad_accum", [1, 2])
def test_penalty_gradient_is_the_same_under_gradient_accumulation(
    grad_accum: int, tmp_path: Path
) -> None:
    """No data loss, SGD at lr 1: one optimizer step moves each weight by exactly λ·sign(w),
    whether the step accumulates one batch or two; biases stay put."""
    from accelerate import Accelerator
    from rich.console import Console

    from jiyi.config import LoopConfig
    from jiyi.loop import run_loop, start_run

    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    w0, b0 = model.weight.detach().clone(), model.bias.detach().clone()
    config = LoopConfig(
        output=str(tmp_path / "run"), l1=0.1, grad_accum=grad_accum, batch_size=1,
        max_grad_norm=0.0, max_steps=1, log_every=1,
    )  # fmt: skip
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    accelerator = Accelerator(mixed_precision="no", cpu=not torch.cuda.is_available())
    run = start_run(
        config, accelerator, model, optimizer, scheduler,
        run_dir=tmp_path / "run", total_steps=1, console=Console(quiet=True),
    )  # fmt: skip
    x = torch.ones(1, 3)
    run_loop(
        run,
        epoch_batches=lambda epoch, position: iter([[0], [1]][position:]),
        batch_loss=lambda batch: (run.model(x).sum() * 0.0, 1),
        evaluate=lambda: False,
    )
    if run.tb:
        run.tb.close()
    torch.testing.assert_close(model.weight.detach(), w0 - 0.1 * w0.sign())
    torch.testing.assert_close(model.bias.detach(), b0)
    events = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    train = next(e for e in events if e["event"] == "train")
    assert train["loss"] == 0.0
    assert train["l1"] == pytest.approx(0.1 * model.weight.abs().sum().item(), rel=1e-6)


def mean_abs_weight(run_dir: Path) -> float:
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(str(run_dir / "model"))
    weights = decay_split(model)[0]
    return sum(w.abs().sum().item() for w in weights) / sum(w.numel() for w in weights)


def train_tiny(model: Path, data: Path, out: Path, *extra: str) -> dict:
    """10 steps (one validation pass, at the end: the saved model is the final one)."""
    argv = train_argv(model, data, out, "--max-steps", "10", *extra)
    return main(argv)


def test_l1_shrinks_weights_and_prox_makes_exact_zeros(
    tiny_model_dir: Path, tiny_data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    summaries = {}
    for name, extra in {
        "none": ("--weight-decay", "0"),
        "l1": ("--weight-decay", "0", "--l1", "1.0"),
        "prox": ("--weight-decay", "0", "--l1", "1.0", "--l1-prox"),
    }.items():
        capsys.readouterr()
        assert train_tiny(tiny_model_dir, tiny_data_dir, tmp_path / name, *extra) == 0
        summaries[name] = json.loads(capsys.readouterr().out)

    plain, l1, prox = (mean_abs_weight(tmp_path / n) for n in ("none", "l1", "prox"))
    assert l1 < 0.8 * plain and prox < 0.8 * plain
    none, sub, prox_ = (summaries[n]["sparsity"] for n in ("none", "l1", "prox"))
    assert none["exact_zero"] < 0.01  # the [PAD] embedding row is all 0
    assert sub["near_zero"] > none["near_zero"] + 0.1
    assert sub["exact_zero"] == none["exact_zero"]  # the subgradient under AdamW: no exact zeros
    assert prox_["exact_zero"] > 0.2  # soft-thresholding: exact zeros
    assert prox_["near_zero"] >= prox_["exact_zero"]

    for name in ("none", "l1", "prox"):
        events = [
            json.loads(x) for x in (tmp_path / name / "metrics.jsonl").read_text().splitlines()
        ]
        train = [e for e in events if e["event"] == "train"]
        sparsity = [e for e in events if e["event"] == "sparsity"]
        assert len(sparsity) == 1 and sparsity[0]["step"] == 10  # logged for every run
        assert sparsity[0]["n_weights"] == summaries[name]["sparsity"]["n_weights"]
        if name == "none":
            assert all("l1" not in e for e in train)
        else:
            assert all(e["l1"] > 0 and "loss" in e for e in train)
        # the model evaluated on --test is the final one here: the same sparsity
        metrics = json.loads((tmp_path / name / "eval" / "metrics.json").read_text())
        assert metrics["sparsity"] == summaries[name]["sparsity"]


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (("--l1", "-0.5"), "--l1 must be >= 0"),
        (("--l1-prox",), "--l1-prox applies the --l1 penalty"),
    ],
)
def test_bad_l1_settings_name_the_flag(
    flags: tuple[str, ...],
    message: str,
    tiny_model_dir: Path,
    tiny_data_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(train_argv(tiny_model_dir, tiny_data_dir, tmp_path / "bad", *flags)) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()
