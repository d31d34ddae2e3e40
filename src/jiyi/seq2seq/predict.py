"""Generation from a seq2seq run: texts in, summaries or translations out; `jiyi predict` and
`jiyi evaluate` on such a run.

>>> gen = Seq2SeqGenerator("runs/reverse")
>>> gen.generate(["abc"])                 # the run's GenerationConfig (greedy or beam search)
['cba']
>>> gen.generate(["abc"], num_beams=4)   # override a setting for this call
['cba']
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from jiyi.runs import eval_dir, open_run


class Seq2SeqGenerator:
    """A seq2seq run's model folder, ready to generate."""

    def __init__(self, run_or_model_dir: str | Path, batch_size: int = 32) -> None:
        from jiyi.models import load_tokenizer
        from jiyi.seq2seq.modeling import load_saved

        folder, self.meta = open_run(run_or_model_dir, "seq2seq", "seq2seq")
        self.model = load_saved(folder, share_weights=self.meta.get("share_weights", False))
        self.tokenizer = load_tokenizer(str(folder))
        self.batch_size = batch_size

    def encode(self, sources: list[str]) -> list[list[int]]:
        from jiyi.seq2seq.data import Pair, encode_pairs

        pairs = [Pair(s, None) for s in sources]
        max_length = int(self.meta.get("max_length", 512))
        return encode_pairs(
            self.tokenizer, pairs, max_length=max_length, max_target_length=1
        ).sources

    def generate(self, sources: list[str], **overrides: Any) -> list[str]:
        """One output per source, in input order. `overrides`: GenerationConfig settings for
        this call (num_beams, length_penalty, max_new_tokens, no_repeat_ngram_size, ...)."""
        from jiyi.seq2seq.modeling import generate_texts

        gen = copy.deepcopy(self.model.generation_config)
        if overrides.get("num_beams", gen.num_beams) > 1 and gen.num_beams == 1:
            gen.early_stopping = True
        for key, value in overrides.items():
            setattr(gen, key, value)
        return generate_texts(
            self.model, self.tokenizer, self.encode(sources), gen, batch_size=self.batch_size
        )


def predict_rows(
    run_dir: str, input_path: str, *, source_column: str | None = None, batch_size: int = 32
) -> list[dict[str, str]]:
    """`jiyi predict` on a seq2seq run: {"source", "prediction"} per input text."""
    from jiyi.seq2seq.data import read_sources

    generator = Seq2SeqGenerator(run_dir, batch_size=batch_size)
    column = source_column or generator.meta.get("source_column", "source")
    sources = read_sources(input_path, column)
    predictions = generator.generate(sources) if sources else []
    return [{"source": s, "prediction": p} for s, p in zip(sources, predictions, strict=True)]


def evaluate_seq2seq_run(
    run_dir: str | Path,
    data: str | Path,
    *,
    output: str | Path | None = None,
    on_bad_rows: str = "error",
    source_column: str | None = None,
    target_column: str | None = None,
    batch_size: int = 32,
) -> tuple[dict[str, Any], Path]:
    """`jiyi evaluate` of a seq2seq run on a file of pairs: eval/metrics.json (rouge1, rouge2,
    rougeL, bleu, chrf, exact_match, loss, n) and eval/predictions.jsonl."""
    from jiyi.seq2seq.data import encode_pairs, read_pairs
    from jiyi.seq2seq.train import evaluate_pairs, write_seq2seq_eval

    generator = Seq2SeqGenerator(run_dir, batch_size=batch_size)
    meta = generator.meta
    pairs = read_pairs(
        data,
        source_column=source_column or meta.get("source_column", "source"),
        target_column=target_column or meta.get("target_column", "target"),
        on_bad_rows=on_bad_rows,
    )
    model = generator.model
    enc = encode_pairs(
        generator.tokenizer, pairs.examples, max_length=int(meta.get("max_length", 512)),
        max_target_length=int(meta.get("max_target_length", 512)),
        decoder_start_id=model.config.decoder_start_token_id,
    )  # fmt: skip
    metrics, predictions = evaluate_pairs(
        model, generator.tokenizer, enc, pairs.examples, model.generation_config,
        batch_size=batch_size, device=next(model.parameters()).device,
    )  # fmt: skip
    metrics["skipped"] = len(pairs.skipped)
    out_dir = eval_dir(run_dir, output)
    write_seq2seq_eval(out_dir, metrics, pairs.examples, predictions)
    return metrics, out_dir


def print_metrics(metrics: dict[str, Any], title: str) -> None:
    """The headline scores as a small table on stderr."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for name in ("rouge1", "rouge2", "rougeL", "bleu", "chrf", "exact_match", "loss", "n"):
        table.add_column(name, justify="right")
    values = [
        metrics.get(k)
        for k in ("rouge1", "rouge2", "rougeL", "bleu", "chrf", "exact_match", "loss", "n")
    ]
    table.add_row(
        *("-" if v is None else f"{v:.4f}" if isinstance(v, float) else str(v) for v in values)
    )
    Console(stderr=True).print(table)
