"""Entities out of a NER run: raw text in, spans with character offsets out.

>>> tagger = NerTagger("runs/ner")
>>> tagger.predict_texts(["Alice flew to New York."])
[{'entities': [{'start': 0, 'end': 5, 'text': 'Alice', 'type': 'PER', 'score': 0.98}, ...]}]

Raw text is split into words by `jiyi.ner.align.split_words` (punctuation apart, one word per
CJK character), so every offset maps back to the exact substring of the input. Pre-tokenised
input (`predict_tokens`) gives token indices instead. A span's score is the mean probability of
the predicted tag over its words.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from jiyi.compress.trim_hooks import warn_unknown_rate
from jiyi.ner.align import encode_words, split_words
from jiyi.ner.tags import spans_from_tags
from jiyi.runs import eval_dir, open_run
from jiyi.unpadded import enable as enable_unpadded


class NerTagger:
    """A NER run's model folder, ready to tag words or raw texts."""

    def __init__(self, run_or_model_dir: str | Path, batch_size: int = 64) -> None:
        from transformers import AutoModelForTokenClassification

        from jiyi.lora import load_pretrained  # a --no-lora-merge run: base + adapter
        from jiyi.models import load_tokenizer, quiet_transformers

        folder, self.meta = open_run(run_or_model_dir, "ner", "NER")
        self.model_dir = folder
        with quiet_transformers():
            self.model = load_pretrained(AutoModelForTokenClassification, folder).eval()
        self.unpadded = enable_unpadded(self.model)  # forward passes on real tokens only
        self.tokenizer = load_tokenizer(str(folder))
        self.labels: list[str] = self.meta["labels"]
        self.scheme = self.meta.get("scheme", "BIO")
        self.batch_size = batch_size

    def tag_words(self, sentences: list[list[str]]) -> list[tuple[list[str], np.ndarray]]:
        """Per sentence: the tag of every word and the (n_words, n_labels) probabilities."""
        from jiyi.ner.train import decode, forward_scores

        windows = encode_words(
            self.tokenizer, sentences, self.meta["max_length"], self.meta.get("stride", 32)
        )
        warn_unknown_rate(self.tokenizer, windows.to_encoded(), self.model_dir)  # trimmed vocab
        pad_id = self.tokenizer.pad_token_id or 0
        scores = forward_scores(self.model, windows, pad_id, self.batch_size, torch.device("cpu"))
        tags, probs = decode(windows, scores, self.labels)
        return list(zip(tags, probs, strict=True))

    def _entities(self, tags: list[str], probs: np.ndarray) -> list[tuple[int, int, str, float]]:
        spans, _ = spans_from_tags(tags, self.scheme)  # type: ignore[arg-type]
        out = []
        for span in spans:
            rows = [
                probs[i, self.labels.index(tags[i])]
                for i in range(span.start, span.end)
                if not np.isnan(probs[i]).any()
            ]
            out.append((span.start, span.end, span.type, float(np.mean(rows)) if rows else 0.0))
        return out

    def predict_tokens(self, sentences: list[list[str]]) -> list[dict[str, Any]]:
        """Pre-tokenised input: tags and entities with token indices (end exclusive)."""
        rows = []
        for words, (tags, probs) in zip(sentences, self.tag_words(sentences), strict=True):
            entities = [
                {
                    "start": s,
                    "end": e,
                    "text": " ".join(words[s:e]),
                    "type": t,
                    "score": round(p, 4),
                }
                for s, e, t, p in self._entities(tags, probs)
            ]
            rows.append({"tokens": words, "tags": tags, "entities": entities})
        return rows

    def predict_texts(self, texts: list[str]) -> list[dict[str, Any]]:
        """Raw text: entities with character offsets into each text (text[start:end])."""
        split = [split_words(text) for text in texts]
        tagged = self.tag_words([words for words, _ in split])
        rows = []
        for text, (_, offsets), (tags, probs) in zip(texts, split, tagged, strict=True):
            entities = []
            for s, e, kind, score in self._entities(tags, probs):
                start, end = offsets[s][0], offsets[e - 1][1]
                entities.append(
                    {"start": start, "end": end, "text": text[start:end], "type": kind,
                     "score": round(score, 4)}
                )  # fmt: skip
            rows.append({"entities": entities})
        return rows


def evaluate_ner_run(
    run_dir: str | Path,
    data: str | Path,
    *,
    output: str | Path | None = None,
    on_bad_rows: str = "error",
    strict: bool = False,
    batch_size: int = 64,
) -> tuple[dict[str, Any], Path]:
    """`jiyi evaluate` of a NER run on a tagged file: eval/metrics.json and errors.jsonl.
    The file's tags are converted to the run's scheme (repairs counted in the metrics)."""
    from jiyi.ner.data import read_ner
    from jiyi.ner.metrics import ner_metrics
    from jiyi.ner.tags import convert
    from jiyi.ner.train import NerSplit, write_ner_eval

    tagger = NerTagger(run_dir, batch_size=batch_size)
    read = read_ner(data, labelled=True, on_bad_rows=on_bad_rows)
    repaired = read.repaired
    for ex in read.examples:
        ex.tags, n = convert(ex.tags or [], tagger.scheme)  # type: ignore[arg-type]
        repaired += n
    split = NerSplit("data", str(data), list(read.examples))
    predicted = [tags for tags, _ in tagger.tag_words([ex.tokens for ex in split.examples])]
    metrics = ner_metrics(split.gold, predicted, strict=strict, scheme=tagger.scheme)
    metrics["repaired"] = repaired
    out_dir = eval_dir(run_dir, output)
    write_ner_eval(out_dir, metrics, split, predicted)
    return metrics, out_dir
