"""Extractive question answering: `jiyi train --task qa`, `jiyi predict` / `jiyi evaluate` on a QA
run, and `QuestionAnswerer` for Python.

Modules: data (SQuAD JSON and flat rows, answers checked against their contexts), windows
(question + context into overlapping windows, answer token positions), spans (best span or no
answer from start/end logits), metrics (SQuAD v2 exact match and F1), train, predict.
"""
