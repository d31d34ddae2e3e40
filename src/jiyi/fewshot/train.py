"""`jiyi train --method contrastive`: the two phases of SetFit on jiyi's loop.

Reads top to bottom: set up, read data, make pairs, (1) tune the encoder on the pairs with
`jiyi.loop.run_loop` (each validation pass fits the head and scores it; the best encoder and
its head are model/), (2) restore the best model, calibrate, evaluate on test.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from jiyi.config import TrainConfig
from jiyi.data.collate import pad_batch
from jiyi.fewshot.pairs import sentence_pairs
from jiyi.io import atomic_directory
from jiyi.loop import build_optimizer, grouped_epochs, run_loop, setup, start_run, steps_per_epoch
from jiyi.memory.classify import fit_linear_head
from jiyi.pooled import encode_vectors, head_record, label_config, save_head, sentence_vectors
from jiyi.prepare import PreparedData, read_data, tokenize_splits
from jiyi.runs import write_meta
from jiyi.tasks.presets import Preset, resolve_schedule

# SetFit's defaults for the body: one pass over the pairs at lr 2e-5.
CONTRASTIVE_PRESET = Preset(
    min_steps=1, max_epochs=1, lr=dict.fromkeys(("small", "base", "large"), 2e-5)
)
HEAD_C = 1.0  # scikit-learn's LogisticRegression default, as SetFit's head


def cosine_pair_loss(u: torch.Tensor, v: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error between cos(u, v) and the pair's target (1 same label, 0 different):
    sentence-transformers' CosineSimilarityLoss, the loss of SetFit's body phase.

    >>> cosine_pair_loss(torch.tensor([[1., 0.]]), torch.tensor([[0., 1.]]), torch.tensor([1.]))
    tensor(1.)
    """
    return F.mse_loss(F.cosine_similarity(u, v, dim=-1), target.to(u.dtype))


def pair_lengths(pairs: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """The padded length of each pair's batch row: the longer of its two texts."""
    return np.maximum(lengths[pairs[:, 0]], lengths[pairs[:, 1]])


def train_contrastive(
    config: TrainConfig, console: Any = None, explicit: set[str] = frozenset()
) -> dict[str, Any]:
    """Tune `config.model` on sentence pairs of `config.train`, fit the logistic head, write the
    run; returns the summary `jiyi.train.train` expects (`test` with --test)."""
    from jiyi.evaluate import classification_metrics
    from jiyi.inspect.embeddings import load_encoder
    from jiyi.models import save_model
    from jiyi.pooled import load_sentence_classifier
    from jiyi.train import finish_classifier_run

    run_dir, config, accelerator, console, say = setup(config, explicit, console)
    main = accelerator.is_main_process

    # --- data and pairs: every input error surfaces here, before the run folder exists --------
    data: PreparedData = read_data(config)
    encoder = load_encoder(config.model, "--model")
    model, tokenizer = encoder.model, encoder.tokenizer
    label_config(model, data.labels)
    tokenize_splits(data, tokenizer, config)
    train_split, val_split = data.splits["train"], data.splits["validation"]
    assert train_split.enc is not None and val_split.enc is not None
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    pairs = sentence_pairs(train_split.targets, iterations=config.pair_iterations, seed=config.seed)
    n_classes = len(data.labels)
    say(
        f"--method contrastive: {len(pairs)} pairs ({config.pair_iterations} rounds over "
        f"{len(train_split.examples)} texts; half same-label), then a logistic head."
    )

    # --- optimizer and schedule over the pairs (SetFit's 1 epoch at lr 2e-5 unless given) -----
    world = accelerator.num_processes
    per_epoch = steps_per_epoch(len(pairs), config, world)
    total_steps = resolve_schedule(CONTRASTIVE_PRESET, config, per_epoch, model, say, "contrastive")
    optimizer, scheduler = build_optimizer(model, config, total_steps)
    model.train()
    run = start_run(
        config, accelerator, model, optimizer, scheduler,
        run_dir=run_dir, total_steps=total_steps, console=console,
    )  # fmt: skip
    model, state = run.model, run.state
    if state.step == 0:
        run.log(
            {
                "event": "start",
                "method": "contrastive",
                "labels": data.labels,
                "n_train": len(train_split.examples),
                "n_validation": len(val_split.examples),
                "n_pairs": len(pairs),
                "n_positive_pairs": int(pairs[:, 2].sum()),
                "total_steps": total_steps,
                "world_size": world,
            }
        )

    def fit_head() -> tuple[np.ndarray, np.ndarray]:
        """Phase 2 on the encoder as it is now: the logistic head on the training vectors."""
        body = accelerator.unwrap_model(model)
        vectors = encode_vectors(
            body, train_split.enc, pad_id=pad_id, batch_size=config.eval_batch_size
        )
        return fit_linear_head(vectors, train_split.targets, n_classes, HEAD_C)

    def save_best(metrics: dict[str, Any], weight: np.ndarray, bias: np.ndarray) -> None:
        if not main:
            return
        with atomic_directory(run_dir / "model") as tmp:
            save_model(accelerator.unwrap_model(model), tokenizer, tmp)
            save_head(tmp, weight, bias)
            meta = {
                "task": config.task,
                "method": "contrastive",
                "head": head_record("mean-pool-logistic", C=HEAD_C),
                "pair_iterations": config.pair_iterations,
                "max_length": config.max_length,
                "truncation": config.truncation,
                "text_column": config.text_column,
                "text_pair_column": None,
                "label_column": config.label_column,
                "base_model": config.model,
                "step": state.step,
                "validation": metrics,
            }
            write_meta(tmp, meta)

    def run_eval() -> bool:
        """Fit the head, score it on validation, keep the best; True when early stopping says stop."""
        weight, bias = fit_head()
        body = accelerator.unwrap_model(model)
        vectors = encode_vectors(
            body, val_split.enc, pad_id=pad_id, batch_size=config.eval_batch_size
        )
        probs = torch.softmax(torch.from_numpy(vectors @ weight.T + bias), dim=-1).numpy()
        metrics = classification_metrics(val_split.targets, probs, data.labels)
        assert config.metric is not None
        return run.record_eval(metrics, config.metric, lambda: save_best(metrics, weight, bias))

    # --- phase 1: the body, on pairs; batches of similar length shuffled by (seed, epoch) -----
    targets = torch.from_numpy(pairs[:, 2]).float()

    def batch_loss(batch: np.ndarray) -> tuple[torch.Tensor, int]:
        rows = np.concatenate([pairs[batch, 0], pairs[batch, 1]])  # (2B,): firsts then seconds
        inputs = {
            k: v.to(accelerator.device) for k, v in pad_batch(train_split.enc, rows, pad_id).items()
        }
        hidden = model(**inputs).last_hidden_state  # (2B, T, H)
        vectors = sentence_vectors(hidden, inputs["attention_mask"])  # (2B, H)
        u, v = vectors[: len(batch)], vectors[len(batch) :]  # (B, H) each
        return cosine_pair_loss(u.float(), v.float(), targets[batch].to(accelerator.device)), len(
            batch
        )

    train_seconds = run_loop(
        run,
        epoch_batches=grouped_epochs(
            pair_lengths(pairs, train_split.enc.lengths), config, accelerator
        ),
        batch_loss=batch_loss,
        evaluate=run_eval,
    )

    # --- phase 2 is in model/ (the head of the best encoder); calibrate, evaluate on test -------
    accelerator.wait_for_everyone()
    best = load_sentence_classifier(run_dir / "model")
    summary = run.summary(
        train_seconds, labels=data.labels, method="contrastive", n_pairs=len(pairs)
    )
    settings = {"method": "contrastive", "pair_iterations": str(config.pair_iterations)}
    return finish_classifier_run(
        best, data, config, accelerator, pad_id, run, summary, settings, say
    )
