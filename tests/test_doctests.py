"""The docstring examples that run as they stand are run, so they stay true.

Modules whose `>>>` lines sketch a session (a run folder on disk, a server) are not listed.
"""

from __future__ import annotations

import doctest
import importlib

import pytest

RUNNABLE = [
    "jiyi.render",
    "jiyi.seq2seq.metrics",
    "jiyi.bias",
    "jiyi.calibrate",
    "jiyi.tasks.registry",
    "jiyi.tasks.qa",
    "jiyi.config",
    "jiyi.tune.report",
    "jiyi.tune.study",
    "jiyi.tune.space",
    "jiyi.active.strategies",
    "jiyi.active.run",
    "jiyi.serve.cli",
    "jiyi.serve.middleware",
    "jiyi.serve.routes",
    "jiyi.curve.subsets",
    "jiyi.ner.report",
    "jiyi.ner.align",
    "jiyi.ner.tags",
    "jiyi.ner.crf",
    "jiyi.audit.duplicates",
    "jiyi.audit.confident",
    "jiyi.fewshot.pairs",
    "jiyi.fewshot.train",
    "jiyi.imbalance",
    "jiyi.qa.windows",
    "jiyi.qa.spans",
    "jiyi.qa.metrics",
    "jiyi.prompts",
    "jiyi.precision",
    "jiyi.cli_help",
    "jiyi.me5.convert",
    "jiyi.data.collate",
    "jiyi.data.text",
    "jiyi.data.sources",
    "jiyi.data.reading",
    "jiyi.sentences",
    "jiyi.resume",
    "jiyi.lora",
    "jiyi.inspect.embeddings",
    "jiyi.inspect.attribution",
    "jiyi.inspect.drift",
    "jiyi.inspect.attention",
    "jiyi.inspect.explain_report",
    "jiyi.evaluate_run",
    "jiyi.compress.prune",
    "jiyi.compress.distill",
]


@pytest.mark.parametrize("name", RUNNABLE)
def test_docstring_examples_hold(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0, f"{name} has no examples left: drop it from RUNNABLE"
    assert result.failed == 0
