"""jiyi.rowwise: the vocabulary rows a step touched get dense AdamW's update, the others stay."""

from __future__ import annotations

import copy
import json

import pytest
import torch

from jiyi.rowwise import AdamW, RowEmbedding, collect, enable


class Tagger(torch.nn.Module):
    """A vocabulary table (its own, or tied to the output layer) and a small head."""

    def __init__(self, vocab: int = 12, dim: int = 5, tied: bool = False, padding_idx=None):
        super().__init__()
        self.embed = torch.nn.Embedding(vocab, dim, padding_idx=padding_idx)
        self.mix = torch.nn.Linear(dim, dim)
        self.out = torch.nn.Linear(dim, vocab, bias=False)
        if tied:
            self.out.weight = self.embed.weight

    def get_input_embeddings(self) -> torch.nn.Module:
        return self.embed

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.out(torch.tanh(self.mix(self.embed(ids)))).logsumexp(-1).mean()


def pair(**kwargs):
    """The same model twice: one trained densely by torch's AdamW, one row-wise."""
    torch.manual_seed(0)
    dense = Tagger(**kwargs)
    rowwise = copy.deepcopy(dense)
    tables = enable(rowwise)
    opts = (
        torch.optim.AdamW(dense.parameters(), lr=0.05, weight_decay=0.1),
        AdamW(rowwise.parameters(), lr=0.05, weight_decay=0.1, tables=tables),
    )
    return (dense, rowwise), opts, tables


def train(model, opt, batches, max_norm=None, tables=()):
    for group in batches:  # a step accumulates its group's batches
        for ids in group:
            model(torch.tensor(ids)).backward()
        if max_norm is not None:
            params = [*model.parameters(), *collect(tables)]
            torch.nn.utils.clip_grad_norm_(params, max_norm)
        opt.step()
        opt.zero_grad(set_to_none=True)


def test_enable_takes_the_input_table_only_when_untied_and_trainable():
    assert enable(Tagger(tied=True)) == []
    frozen = Tagger()
    frozen.embed.weight.requires_grad_(False)
    assert enable(frozen) == []
    model = Tagger()
    state = copy.deepcopy(model.state_dict())
    (table,) = enable(model)
    assert table is model.embed and type(table) is RowEmbedding and enable(model) == [table]
    assert model.state_dict().keys() == state.keys()
    model.eval()
    ids = torch.tensor([[3, 1, 3]])
    torch.testing.assert_close(model.embed(ids), state["embed.weight"][ids])  # eval: plain
    assert table.pending == []


@pytest.mark.parametrize("max_norm", [None, 0.05])
def test_rows_touched_every_step_follow_dense_adamw(max_norm):
    """Every row in every step (accumulating two batches a step, clipped or not): the same
    weights and moments as torch's AdamW over three steps."""
    (dense, rowwise), (d_opt, r_opt), tables = pair()
    everything = list(range(12))
    batches = [[everything[:7] * 2, everything[5:]], [everything[::-1]], [everything, [0, 1]]]
    train(dense, d_opt, batches, max_norm)
    train(rowwise, r_opt, batches, max_norm, tables)
    for (name, a), b in zip(dense.named_parameters(), rowwise.parameters(), strict=True):
        torch.testing.assert_close(a, b, msg=name)
    w = rowwise.embed.weight
    for key in ("exp_avg", "exp_avg_sq"):
        torch.testing.assert_close(d_opt.state[dense.embed.weight][key], r_opt.state[w][key])
    assert float(r_opt.state[w]["step"]) == 3.0


def test_untouched_rows_keep_value_and_moments():
    (dense, rowwise), (d_opt, r_opt), tables = pair(padding_idx=0)
    before = rowwise.embed.weight.detach().clone()
    train(rowwise, r_opt, [[[0, 1, 2]], [[0, 3]]], max_norm=1.0, tables=tables)
    train(dense, d_opt, [[[0, 1, 2]], [[0, 3]]], max_norm=1.0)
    changed = (rowwise.embed.weight != before).any(1).nonzero().flatten().tolist()
    assert changed == [1, 2, 3]  # the padding row (0) never, though every batch has it
    m = r_opt.state[rowwise.embed.weight]["exp_avg"]
    assert (m[4:] == 0).all() and (m[[1, 2, 3]] != 0).all()
    # the dense optimizer also moves rows 4-11 (weight decay) and row 1, 2 in step 2 (momentum)
    dense_changed = (dense.embed.weight != before).any(1).nonzero().flatten().tolist()
    assert dense_changed == list(range(1, 12))
    torch.testing.assert_close(rowwise.embed.weight[3], dense.embed.weight[3], rtol=0, atol=0.02)


def test_first_step_equals_dense_without_weight_decay():
    """On the first step an untouched row has no moment and, without weight decay, dense AdamW
    leaves it too: the whole table agrees, the gradient's norm (clipping) included."""
    (dense, rowwise), _, tables = pair()
    d_opt = torch.optim.AdamW(dense.parameters(), lr=0.05, weight_decay=0.0)
    r_opt = AdamW(rowwise.parameters(), lr=0.05, weight_decay=0.0, tables=tables)
    for model in (dense, rowwise):
        model(torch.tensor([4, 4, 7])).backward()
        model(torch.tensor([7, 9])).backward()
    d_norm = torch.nn.utils.clip_grad_norm_(dense.parameters(), 0.01)
    r_norm = torch.nn.utils.clip_grad_norm_([*rowwise.parameters(), *collect(tables)], 0.01)
    assert collect(tables)[0].grad.shape == (3, 5)  # rows 4, 7, 9 once each
    torch.testing.assert_close(d_norm, r_norm)
    d_opt.step(), r_opt.step()
    torch.testing.assert_close(dense.embed.weight, rowwise.embed.weight)


def test_a_dense_gradient_takes_the_rows_in():
    """The --l1 penalty gives the table a dense gradient too: one exact dense update."""
    (dense, rowwise), (d_opt, r_opt), tables = pair()
    for model, opt in ((dense, d_opt), (rowwise, r_opt)):
        for _ in range(2):
            (model(torch.tensor([2, 5])) + 0.01 * model.embed.weight.abs().sum()).backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
    torch.testing.assert_close(dense.embed.weight, rowwise.embed.weight)
    assert tables[0].rows is None and tables[0].pending == []


def test_state_dict_moves_between_rowwise_and_dense():
    (dense, rowwise), (_, r_opt), tables = pair()
    train(rowwise, r_opt, [[[1, 2]], [[2, 3]]], tables=tables)
    dense.load_state_dict(rowwise.state_dict())
    d_opt = torch.optim.AdamW(dense.parameters(), lr=0.05, weight_decay=0.1)
    saved = r_opt.state_dict()  # (copies: loading shares a state dict's tensors)
    d_opt.load_state_dict(copy.deepcopy(saved))  # a run resumed densely: the same keys
    again = AdamW(rowwise.parameters(), lr=0.05, weight_decay=0.1, tables=tables)
    again.load_state_dict(copy.deepcopy(saved))
    everything = [list(range(12))]
    train(dense, d_opt, [everything])
    train(rowwise, again, [everything], tables=tables)
    torch.testing.assert_close(dense.embed.weight, rowwise.embed.weight)


def test_train_updates_only_the_rows_its_texts_use(tiny_model_dir, tiny_data_dir, tmp_path):
    """A real `jiyi train`: in its checkpoint the word table's moments are set on the rows the
    training texts use and zero on the others (validation-only words, the padding row)."""
    import csv

    from transformers import AutoTokenizer

    from conftest import train_argv
    from jiyi.cli import main

    out = tmp_path / "run"
    assert main(train_argv(tiny_model_dir, tiny_data_dir, out, "--keep-final-checkpoint")) == 0
    ckpt = sorted((out / "checkpoints").iterdir())[-1]
    state = torch.load(ckpt / "optimizer.pt", weights_only=True)["state"]
    tok = AutoTokenizer.from_pretrained(str(tiny_model_dir))
    with open(tiny_data_dir / "train.csv", encoding="utf-8") as f:
        used = {i for row in csv.DictReader(f) for i in tok(row["text"])["input_ids"]}
    (m,) = [s["exp_avg"] for s in state.values() if s["exp_avg"].shape[0] == len(tok)]
    touched = set((m != 0).any(1).nonzero().flatten().tolist())
    assert touched == used and 0 not in touched and len(touched) < len(tok)
    metrics = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert metrics[-1]["event"] == "end" or any(e["event"] == "eval" for e in metrics)
