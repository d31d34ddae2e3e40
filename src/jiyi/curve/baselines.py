"""What the fine-tuned points are compared with, at no training cost: the kNN memory series
(`memory_points`, over the base model's vectors of each subset), the majority-class
baseline (`majority_baseline`) and TF-IDF character n-grams with logistic regression
(`char_tfidf_accuracy`, the bag-of-characters bar a Chinese encoder has to clear)."""

from __future__ import annotations

import gc
import sys
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np

from jiyi.config import TrainConfig


def free_memory() -> None:
    gc.collect()
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


def memory_points(
    config: TrainConfig,
    train_examples: Sequence[Any],
    val_examples: Sequence[Any],
    labels: list[str],
    subsets: dict[tuple[int, int], np.ndarray],
) -> list[dict[str, Any]]:
    """The kNN memory over the base model's context vectors (mean-pooled last layer, unit
    length, as `jiyi memory build`), one per subset, no training: k and the temperature are
    chosen by cross-validation on the subset, then the full validation file is scored."""
    from jiyi.evaluate import classification_metrics, multilabel_metrics
    from jiyi.inspect.embeddings import embed_texts, load_encoder
    from jiyi.memory.classify import MemoryClassifier
    from jiyi.prepare import targets_for

    encoder = load_encoder(config.model, "--model")
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        encoder.model.to("cuda")

    def embed(examples: Sequence[Any]) -> np.ndarray:
        texts = [e.text for e in examples]
        return embed_texts(
            encoder,
            texts,
            normalize=True,
            batch_size=config.eval_batch_size,
            max_length=config.max_length,
        )

    needed = np.unique(np.concatenate(list(subsets.values())))  # only the rows some subset holds
    train_x = np.zeros((len(train_examples), encoder.hidden_size), dtype=np.float32)
    train_x[needed] = embed([train_examples[i] for i in needed])  # (N, H), unused rows 0
    val_x = embed(val_examples)  # (V, H)
    encoder.model.to("cpu")
    free_memory()
    multilabel = config.task == "multilabel"
    train_y = targets_for(list(train_examples), labels, config.task)
    val_y = targets_for(list(val_examples), labels, config.task)
    if not multilabel:
        train_y = np.eye(len(labels), dtype=np.float32)[train_y]  # (N, C) one-hot
    out = []
    for (n, seed), rows in subsets.items():
        x, y = train_x[rows], train_y[rows]
        clf = MemoryClassifier.select(x, y, labels, method="knn", seed=seed)
        k = min(int(clf.param), len(rows))
        probs = np.concatenate(
            [
                clf.predict_proba(q, *_top_k(q, x, y, k))
                for q in np.array_split(val_x, max(1, len(val_x) // 1024))
            ]
        )
        if multilabel:
            metrics = multilabel_metrics(val_y, probs, labels, 0.5)
        else:
            metrics = classification_metrics(val_y, probs, labels)
        value = metrics.get(config.metric or "accuracy")
        out.append({"n": n, "seed": seed, "metric": value, "k": k, "temperature": clf.temperature})
    return out


def majority_baseline(
    train_examples: Sequence[Any], val_examples: Sequence[Any], labels: list[str], metric: str
) -> dict[str, Any]:
    """The metric on validation of always predicting the most common training label."""
    from jiyi.evaluate import classification_metrics
    from jiyi.prepare import targets_for

    common = Counter(e.label for e in train_examples).most_common(1)[0][0]
    probs = np.zeros((len(val_examples), len(labels)))
    probs[:, labels.index(common)] = 1.0
    y = targets_for(list(val_examples), labels, "classification")
    value = classification_metrics(y, probs, labels).get(metric)
    return {"predict": common, "metric": None if value is None else float(value)}


def _top_k(query: np.ndarray, keys: np.ndarray, targets: np.ndarray, k: int) -> tuple[Any, Any]:
    """(Q, k) similarities best first and the (Q, k, C) targets of those rows."""
    sims = query @ keys.T  # (Q, N)
    top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
    top_sims = np.take_along_axis(sims, top, axis=1)
    order = np.argsort(-top_sims, axis=1)
    top = np.take_along_axis(top, order, axis=1)
    return np.take_along_axis(top_sims, order, axis=1), targets[top]


def char_tfidf_accuracy(train_file: str, test_file: str) -> float:
    """Test accuracy of TF-IDF character 1-3 grams + logistic regression trained on TRAIN_FILE
    (any file `jiyi.data.readers.read_examples` reads, single-label)."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    from jiyi.data.readers import read_examples

    train = read_examples(train_file).examples
    test = read_examples(test_file).examples
    pipe = make_pipeline(
        TfidfVectorizer(analyzer="char_wb", ngram_range=(1, 3), sublinear_tf=True, min_df=2),
        LogisticRegression(C=4.0, max_iter=2000),
    )
    pipe.fit([e.text for e in train], [e.label for e in train])
    predicted = pipe.predict([e.text for e in test])
    return float(sum(p == e.label for p, e in zip(predicted, test, strict=True)) / len(test))
