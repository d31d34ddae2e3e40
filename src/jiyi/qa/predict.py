"""Answers out of a QA run: questions and contexts in, answer spans with character offsets out.

>>> qa = QuestionAnswerer("runs/qa")
>>> qa.answer(["What is the code?"], ["The door opens when the code is 4711 and not before."])
[{'question': 'What is the code?', 'answer': '4711', 'start': 32, 'end': 36, 'score': 0.93}]

`answer == context[start:end]` always. When the model abstains (an unanswerable question, see
`jiyi.qa.spans`), `answer` is "" and `start` and `end` are None (JSON null); `score` is then the
probability of the "no answer" position. `score` is softmax(start)[s] * softmax(end)[e] over the
tokens of the window the span was found in.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from jiyi.compress.trim_hooks import warn_unknown_rate
from jiyi.data.collate import pad_batch, sorted_batches
from jiyi.errors import JiyiError
from jiyi.io import atomic_write_json, atomic_write_text
from jiyi.qa.data import Columns, QAExample, read_qa
from jiyi.qa.metrics import score_question, squad_metrics
from jiyi.qa.spans import AnswerSpan, decode_answers
from jiyi.qa.windows import QAWindows, encode_windows
from jiyi.runs import eval_dir, open_run
from jiyi.unpadded import enable as enable_unpadded
from jiyi.unpadded import unpadding


@torch.inference_mode()
def forward_logits(
    model: Any, windows: QAWindows, pad_id: int, batch_size: int, device: Any
) -> list[tuple[np.ndarray, np.ndarray]]:
    """(start logits, end logits) of every window, each (window length,), in window order."""
    enc = windows.to_encoded()
    out: list[tuple[np.ndarray, np.ndarray]] = [(np.empty(0), np.empty(0))] * len(windows)
    was_training = model.training
    model.eval()
    for batch in sorted_batches(enc.lengths, batch_size):
        inputs = {k: v.to(device) for k, v in pad_batch(enc, batch, pad_id).items()}
        with unpadding():  # `jiyi.unpadded.enable`d encoders skip the padding
            result = model(**inputs)
        starts = result.start_logits.float().cpu().numpy()  # (B, T)
        ends = result.end_logits.float().cpu().numpy()  # (B, T)
        for row, i in enumerate(batch):
            n = int(enc.lengths[i])
            out[i] = (starts[row, :n], ends[row, :n])
    if was_training:
        model.train()
    return out


def answer_questions(
    model: Any,
    tokenizer: Any,
    questions: Sequence[str],
    contexts: Sequence[str],
    *,
    max_length: int,
    stride: int,
    max_answer_length: int,
    null_threshold: float,
    batch_size: int,
    device: Any,
    model_dir: str | Path | None = None,
) -> list[AnswerSpan]:
    """Window, run the model, pick the best span (or none) per question. With `model_dir` (a
    trimmed model's folder), warn when the windows are more than 5% [UNK]."""
    if not questions:
        return []
    windows = encode_windows(tokenizer, questions, contexts, max_length, stride)
    if model_dir is not None:
        warn_unknown_rate(tokenizer, windows.to_encoded(), model_dir)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    logits = forward_logits(model, windows, pad_id, batch_size, device)
    return decode_answers(windows, logits, contexts, max_answer_length, null_threshold)


def as_row(question: str, span: AnswerSpan) -> dict[str, Any]:
    return {
        "question": question,
        "answer": span.text,
        "start": span.start,
        "end": span.end,
        "score": round(span.score, 4),
    }


class QuestionAnswerer:
    """A QA run's model folder, ready to answer questions about contexts.

    `max_answer_length` and `null_threshold` default to the run's (its jiyi.json)."""

    def __init__(
        self,
        run_or_model_dir: str | Path,
        batch_size: int = 64,
        *,
        max_answer_length: int | None = None,
        null_threshold: float | None = None,
    ) -> None:
        from transformers import AutoModelForQuestionAnswering

        from jiyi.lora import load_pretrained  # a --no-lora-merge run: base + adapter
        from jiyi.models import load_tokenizer, quiet_transformers

        folder, self.meta = open_run(run_or_model_dir, "qa", "question-answering")
        self.model_dir = folder
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        with quiet_transformers():
            model = load_pretrained(AutoModelForQuestionAnswering, folder, use_safetensors=True)
        self.model = model.to(self.device).eval()
        self.unpadded = enable_unpadded(self.model)  # forward passes on real tokens only
        self.tokenizer = load_tokenizer(str(folder))
        self.batch_size = batch_size
        self.max_answer_length = max_answer_length or int(self.meta.get("max_answer_length", 30))
        self.null_threshold = (
            null_threshold
            if null_threshold is not None
            else float(self.meta.get("null_threshold", 0.0))
        )

    @property
    def columns(self) -> Columns:
        return Columns(
            question=self.meta.get("question_column", "question"),
            context=self.meta.get("context_column", "context"),
            answers=self.meta.get("answers_column", "answers"),
        )

    def spans(self, questions: Sequence[str], contexts: Sequence[str]) -> list[AnswerSpan]:
        if len(questions) != len(contexts):
            raise JiyiError(f"{len(questions)} questions but {len(contexts)} contexts.")
        return answer_questions(
            self.model, self.tokenizer, questions, contexts,
            max_length=int(self.meta["max_length"]), stride=int(self.meta["stride"]),
            max_answer_length=self.max_answer_length, null_threshold=self.null_threshold,
            batch_size=self.batch_size, device=self.device, model_dir=self.model_dir,
        )  # fmt: skip

    def answer(self, questions: Sequence[str], contexts: Sequence[str]) -> list[dict[str, Any]]:
        """Per question: {"question", "answer", "start", "end", "score"} (module docstring)."""
        spans = self.spans(questions, contexts)
        return [as_row(q, s) for q, s in zip(questions, spans, strict=True)]


def predict_rows(
    run_dir: str | Path, input_path: str, batch_size: int = 64
) -> list[dict[str, Any]]:
    """`jiyi predict` on a QA run: rows with a question and a context (JSONL, CSV, SQuAD JSON,
    or JSON Lines on stdin "-") -> one answer row each, in input order."""
    qa = QuestionAnswerer(run_dir, batch_size=batch_size)
    try:
        data = read_qa(input_path, columns=qa.columns, labelled=False)
    except JiyiError as e:
        raise JiyiError(f"--input {e}") from None
    examples = data.examples
    return qa.answer([ex.question for ex in examples], [ex.context for ex in examples])


def evaluate_answers(
    examples: Sequence[QAExample], spans: Sequence[AnswerSpan]
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """SQuAD metrics of the predicted spans, and one row per question for predictions.jsonl."""
    golds = [ex.gold_texts for ex in examples]
    metrics = squad_metrics(golds, [s.text for s in spans])
    rows = []
    for ex, span in zip(examples, spans, strict=True):
        em, f1 = score_question(ex.gold_texts, span.text)
        rows.append(
            {"id": ex.id, "question": ex.question, "prediction": span.text,
             "gold": ex.gold_texts, "em": em, "f1": round(f1, 4)}
        )  # fmt: skip
    return metrics, rows


def write_qa_eval(out_dir: Path, metrics: dict[str, Any], rows: list[dict[str, Any]]) -> None:
    """eval/metrics.json and eval/predictions.jsonl (id, question, prediction, gold, em, f1)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out_dir / "metrics.json", metrics)
    lines = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    atomic_write_text(out_dir / "predictions.jsonl", lines)


def evaluate_qa_run(
    run_dir: str | Path,
    data: str | Path,
    *,
    output: str | Path | None = None,
    on_bad_rows: str = "error",
    batch_size: int = 64,
) -> tuple[dict[str, Any], Path]:
    """`jiyi evaluate` of a QA run on a file with answers: exact match and F1 (overall, HasAns,
    NoAns) into eval/metrics.json, one row per question into eval/predictions.jsonl."""
    qa = QuestionAnswerer(run_dir, batch_size=batch_size)
    read = read_qa(data, columns=qa.columns, labelled=True, on_bad_rows=on_bad_rows)
    examples = read.examples
    spans = qa.spans([ex.question for ex in examples], [ex.context for ex in examples])
    metrics, rows = evaluate_answers(examples, spans)
    metrics["skipped"] = len(read.skipped)
    out_dir = eval_dir(run_dir, output)
    write_qa_eval(out_dir, metrics, rows)
    return metrics, out_dir
