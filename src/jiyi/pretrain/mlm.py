"""`jiyi pretrain`: masked-LM pretraining, from scratch or continued from an encoder.

Reads top to bottom: settings, tokenizer, model, the corpus stream, held-out batches, then the
shared loop (`jiyi.loop.run_loop`) with the masked-LM loss, and a perplexity plot at the end.
The loss runs the vocabulary projection over the masked positions only (~15% of the tokens),
not over every token as `BertForMaskedLM.forward` does.
"""

from __future__ import annotations

import importlib.util
import json
import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from jiyi.checkpoint import TrainState
from jiyi.config import PretrainConfig
from jiyi.errors import JiyiError
from jiyi.io import atomic_directory, atomic_write_json
from jiyi.loop import build_optimizer, run_loop, setup, start_run
from jiyi.pretrain.corpus import Batch, CorpusStream
from jiyi.pretrain.masking import Masker
from jiyi.runs import PRETRAINING, write_meta

PRESET_CONFIGS: dict[str, dict[str, int]] = {
    "tiny": {
        "hidden_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "intermediate_size": 37,
    },
    "small": {
        "hidden_size": 256,
        "num_hidden_layers": 4,
        "num_attention_heads": 4,
        "intermediate_size": 1024,
    },
    "base": {
        "hidden_size": 768,
        "num_hidden_layers": 12,
        "num_attention_heads": 12,
        "intermediate_size": 3072,
    },
}


class MaskedLMObjective(torch.nn.Module):
    """The masked-LM loss of an HF `*ForMaskedLM`, with the vocabulary projection run over the
    masked positions only. A module (not a function) so that DDP sees its forward."""

    def __init__(self, model: Any) -> None:
        super().__init__()
        self.model = model
        self.sparse = hasattr(model, "cls") and hasattr(model, "bert")  # the BERT family

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None, labels: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(summed cross-entropy over the masked positions, their count)."""
        selected = labels != -100
        if not self.sparse:
            logits = self.model(input_ids=input_ids, attention_mask=attention_mask).logits
            logits, targets = logits[selected], labels[selected]
        else:
            hidden = self.model.bert(
                input_ids=input_ids, attention_mask=attention_mask
            ).last_hidden_state
            logits, targets = self.model.cls(hidden[selected]), labels[selected]
        loss = torch.nn.functional.cross_entropy(logits.float(), targets, reduction="sum")
        return loss, selected.sum()


def build_model(
    config: PretrainConfig, say: Any, run_dir: Path, accelerator: Any
) -> tuple[Any, Any]:
    """The masked-LM model and its tokenizer: a new BERT (--config) or an existing encoder
    (--from, trimmed to the corpus's pieces with --trim-vocab) with an MLM head, created tied to
    the input embeddings where it has none."""
    from transformers import AutoModelForMaskedLM, BertConfig, BertForMaskedLM

    from jiyi.compress.trim_hooks import trimmed_base
    from jiyi.models import load_tokenizer, quiet_transformers, resolve_model
    from jiyi.pretrain.tokenizer import iter_corpus_texts

    if config.from_model:
        path = resolve_model(config.from_model, flag="--from")
        if config.trim_vocab:
            paths = _paths(config.corpus or "", "--corpus")
            path = trimmed_base(
                path,
                config,
                lambda: list(iter_corpus_texts(paths, config.text_column)),
                run_dir,
                accelerator,
                say,
                corpus=paths,
            )
        tokenizer = load_tokenizer(config.tokenizer or path)
        with quiet_transformers():
            model, info = AutoModelForMaskedLM.from_pretrained(
                path, output_loading_info=True, attn_implementation="sdpa"
            )
        missing = set(info.get("missing_keys", []))
        prefix = f"{model.base_model_prefix}."
        head = sorted(k for k in missing if not k.startswith(prefix))
        decoder = model.get_output_embeddings()
        if decoder is not None and any(k.endswith("decoder.weight") for k in head):
            # no head in the checkpoint (an encoder saved as BertModel, e.g. e5): the decoder is
            # the word embeddings whatever the config said; only the transform and bias are new
            model.config.tie_word_embeddings = True
            decoder.weight = model.get_input_embeddings().weight
        elif decoder is not None:
            model.tie_weights()
        if head:
            tied = decoder is not None and decoder.weight is model.get_input_embeddings().weight
            new = [k for k in head if not (tied and k.endswith(("decoder.weight", "decoder.bias")))]
            say(
                f"--from {config.from_model}: no masked-LM head in the checkpoint; created one"
                + (", its decoder tied to the word embeddings," if tied else "")
                + f" newly initialised: {', '.join(new)}."
            )
        encoder = sorted(k for k in missing if k.startswith(prefix))
        if encoder:
            say(
                f"[yellow]--from {config.from_model}: {len(encoder)} encoder tensors missing from "
                f"the checkpoint, newly initialised: {', '.join(encoder[:5])}"
                + (", ..." if len(encoder) > 5 else "")
                + ".[/]"
            )
        if len(tokenizer) > model.config.vocab_size:
            raise JiyiError(
                f"--tokenizer {config.tokenizer}: {len(tokenizer)} tokens, but the model of --from "
                f"{config.from_model} has {model.config.vocab_size} embeddings. Use the model's "
                "own tokenizer (leave --tokenizer out)."
            )
        return model, tokenizer
    assert config.architecture and config.tokenizer
    tokenizer = load_tokenizer(config.tokenizer)
    if config.architecture in PRESET_CONFIGS:
        arch: dict[str, Any] = dict(PRESET_CONFIGS[config.architecture])
    else:
        try:
            arch = json.loads(Path(config.architecture).read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise JiyiError(
                f"--architecture {config.architecture}: not a readable JSON file ({e})."
            ) from None
        if not isinstance(arch, dict):
            raise JiyiError(
                f"--architecture {config.architecture}: expected a JSON object of BERT settings."
            )
        arch = {k: v for k, v in arch.items() if k not in ("architectures", "model_type")}
    arch.update(
        vocab_size=len(tokenizer),
        pad_token_id=tokenizer.pad_token_id or 0,
        max_position_embeddings=max(
            int(arch.get("max_position_embeddings", 512)), config.max_length
        ),
        tie_word_embeddings=True,
    )
    try:
        bert_config = BertConfig(**arch)
    except (TypeError, ValueError) as e:
        raise JiyiError(
            f"--architecture {config.architecture}: not a valid BERT configuration ({e})."
        ) from None
    torch.manual_seed(config.seed)
    model = BertForMaskedLM(bert_config)
    model.config._attn_implementation = "sdpa"
    return model, tokenizer


def splits_cjk(tokenizer: Any) -> bool:
    """Whether the tokenizer splits CJK text into one token per character (Chinese BERT)."""
    return len(tokenizer("中文字", add_special_tokens=False)["input_ids"]) == 3


def to_inputs(
    batch: Batch, masker: Masker, rng: np.random.Generator, device: Any
) -> dict[str, torch.Tensor | None]:
    ids, labels = masker(batch.input_ids, batch.word_starts, batch.attention_mask, rng)
    full = bool(batch.attention_mask.all())  # packed blocks need no mask: the fast SDPA path
    return {
        "input_ids": torch.from_numpy(ids).to(device),
        "attention_mask": None
        if full
        else torch.from_numpy(batch.attention_mask).long().to(device),
        "labels": torch.from_numpy(labels).to(device),
    }


def pretrain(
    config: PretrainConfig, console: Any = None, explicit: set[str] = frozenset()
) -> dict[str, Any]:
    """Pretrain with masked LM; returns a summary (steps, perplexity, tokens/s, paths)."""

    run_dir, config, accelerator, console, say = setup(config, explicit, console, "pretrain")
    main = accelerator.is_main_process

    # --- model, tokenizer, corpus: every input error surfaces before the run directory -------
    model, tokenizer = build_model(config, say, run_dir, accelerator)
    assert config.corpus
    chinese_words = config.whole_word_mask and splits_cjk(tokenizer)
    if chinese_words and importlib.util.find_spec("jieba") is None:
        raise JiyiError(
            "--whole-word-mask with a Chinese tokenizer segments words with jieba, which is not "
            "installed: pip install 'jiyi[zh]' (or pip install jieba)."
        )
    corpus = CorpusStream(
        _paths(config.corpus, "--corpus"),
        tokenizer,
        max_length=config.max_length,
        batch_size=config.batch_size,
        text_column=config.text_column,
        whole_word=config.whole_word_mask,
        chinese_words=chinese_words,
        heldout_permille=0 if config.validation else round(config.heldout_fraction * 1000),
        shuffle_buffer=config.shuffle_buffer,
        seed=config.seed,
    )
    heldout_texts = None
    if config.validation:
        from jiyi.pretrain.tokenizer import iter_corpus_texts

        heldout_texts = iter_corpus_texts(
            _paths(config.validation, "--validation"), config.text_column, flag="--validation"
        )
    heldout = corpus.heldout_batches(heldout_texts, max_blocks=config.eval_blocks)
    n_heldout = sum(len(b) for b in heldout)
    if not heldout:
        say("[yellow]No held-out text (--validation, --heldout-fraction): no perplexity.[/]")
    elif n_heldout < 32:
        say(
            f"[yellow]Only {n_heldout} held-out sequences: perplexity will be noisy. Pass "
            "--validation FILES or a larger --heldout-fraction.[/]"
        )
    special = np.array(sorted(set(tokenizer.all_special_ids)), dtype=np.int64)
    masker = Masker(
        mask_id=tokenizer.mask_token_id,
        special_ids=special,
        vocab_size=model.config.vocab_size,
        rate=config.mask_rate,
        whole_word=config.whole_word_mask,
    )
    if tokenizer.mask_token_id is None:
        raise JiyiError("the tokenizer has no [MASK] token; masked-LM pretraining needs one.")

    # --- steps, optimizer, resume -------------------------------------------------------------
    world = accelerator.num_processes
    if config.max_steps:
        total_steps = config.max_steps
    else:
        t0 = time.perf_counter()
        n_blocks, exact = corpus.count_blocks()
        # as epoch_batches cuts them: batches (the last may be short), whole rounds of `world`
        rounds = max(1, math.ceil(n_blocks / config.batch_size) // world)
        total_steps = max(1, math.ceil(config.epochs * math.ceil(rounds / config.grad_accum)))
        say(
            f"{'' if exact else 'about '}{n_blocks} sequences of {config.max_length} tokens per "
            f"epoch{'' if exact else ' (estimated from a sample)'}: {total_steps} steps "
            f"(counted in {time.perf_counter() - t0:.1f} s)."
        )
    eval_steps = config.eval_steps or max(1, total_steps // 10)
    objective = MaskedLMObjective(model)
    optimizer, scheduler = build_optimizer(objective, config, total_steps)
    run = start_run(
        config,
        accelerator,
        objective,
        optimizer,
        scheduler,
        run_dir=run_dir,
        total_steps=total_steps,
        console=console,
        verb="pretrain",
        unit="tokens",
    )
    objective, state = run.model, run.state
    device = accelerator.device
    if state.step == 0:
        run.log(
            {
                "event": "start",
                "corpus": config.corpus,
                "vocab_size": model.config.vocab_size,
                "parameters": sum(p.numel() for p in model.parameters()),
                "heldout_sequences": n_heldout,
                "total_steps": total_steps,
                "world_size": world,
            }
        )

    def heldout_loss() -> float | None:
        """Mean cross-entropy over the masked held-out tokens, masks fixed by the seed."""
        if not heldout:
            return None
        rng = np.random.default_rng([config.seed, 7919])
        inner = accelerator.unwrap_model(objective)
        total, count = 0.0, 0
        inner.eval()
        with torch.inference_mode():
            for batch in heldout:
                loss, n = inner(**to_inputs(batch, masker, rng, device))
                total, count = total + float(loss), count + int(n)
        inner.train()
        return total / max(1, count)

    def save_model(extra: dict[str, Any]) -> None:
        if not main:
            return
        from jiyi.models import quiet_transformers

        with atomic_directory(run_dir / "model") as tmp, quiet_transformers():
            model.save_pretrained(str(tmp), safe_serialization=True)
            tokenizer.save_pretrained(str(tmp))
            write_meta(
                tmp,
                {
                    "task": PRETRAINING,
                    "objective": "masked-lm",
                    "max_length": config.max_length,
                    "base_model": config.from_model,
                    "architecture": config.architecture,
                    "step": state.step,
                    **extra,
                },
            )

    def evaluate() -> bool:
        loss = heldout_loss()
        record: dict[str, Any] = {"event": "eval", "step": state.step, "epoch": state.epoch}
        if loss is None:
            save_model({})
            run.log(record)
            return False
        perplexity = math.exp(min(loss, 50.0))
        improved = state.best_metric is None or loss < state.best_metric
        if improved:
            state.best_metric, state.best_step = loss, state.step
            save_model({"heldout_loss": loss, "perplexity": perplexity})
        record.update(loss=loss, perplexity=perplexity, improved=improved)
        run.log(record)
        if run.tb:
            run.tb.add_scalar("validation/perplexity", perplexity, state.step)
        say(
            f"step {state.step}: held-out perplexity {perplexity:.2f}"
            + (" [green](best)[/]" if improved else "")
        )
        return False

    if state.step == 0:
        evaluate()  # the starting point of the perplexity curve

    def epoch_batches(epoch: int, position: int) -> Iterator[Batch]:
        """This process's batches: every world-th of the stream, whole rounds only."""
        stream = corpus.batches(epoch)
        index = 0
        while True:
            round_ = [b for _, b in zip(range(world), stream, strict=False)]
            if len(round_) < world:
                return
            if index >= position:
                batch = round_[accelerator.process_index]
                batch.index = index
                yield batch
            index += 1

    def batch_loss(batch: Batch) -> tuple[torch.Tensor, int]:
        rng = np.random.default_rng(
            [config.seed, state.epoch, batch.index, accelerator.process_index]
        )
        loss_sum, n = objective(**to_inputs(batch, masker, rng, device))
        return loss_sum / n.clamp(min=1), batch.n_tokens

    def eval_due(state: TrainState) -> bool:
        return state.step % eval_steps == 0

    seconds = run_loop(
        run,
        epoch_batches=epoch_batches,
        batch_loss=batch_loss,
        evaluate=evaluate,
        eval_due=eval_due,
    )
    summary: dict[str, Any] = {
        "run_dir": str(run_dir),
        "model": str(run_dir / "model"),
        "steps": state.step,
        "train_seconds": seconds,
        "best_step": state.best_step,
        "sparsity": run.sparsity,
    }
    if state.best_metric is not None:
        summary["perplexity"] = math.exp(min(state.best_metric, 50.0))
    if main:
        summary.update(write_curve(run_dir, state.train_seconds))
    if run.tb:
        run.tb.close()
    accelerator.wait_for_everyone()
    return summary


def write_curve(run_dir: Path, train_seconds: float) -> dict[str, Any]:
    """eval/metrics.json and eval/perplexity.png from metrics.jsonl."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = [
        json.loads(line) for line in (run_dir / "metrics.jsonl").read_text("utf-8").splitlines()
    ]
    evals = [r for r in records if r.get("event") == "eval" and "perplexity" in r]
    trains = [r for r in records if r.get("event") == "train"]
    out_dir = run_dir / "eval"
    out_dir.mkdir(exist_ok=True)
    tokens_per_s = [r["tokens_per_s"] for r in trains if "tokens_per_s" in r]
    metrics = {
        "perplexity": evals[-1]["perplexity"] if evals else None,
        "best_perplexity": min((r["perplexity"] for r in evals), default=None),
        "steps": trains[-1]["step"] if trains else 0,
        "train_seconds": train_seconds,
        "tokens_per_s": float(np.median(tokens_per_s)) if tokens_per_s else None,
        "curve": [{"step": r["step"], "perplexity": r["perplexity"]} for r in evals],
    }
    atomic_write_json(out_dir / "metrics.json", metrics)
    if evals:
        fig, ax = plt.subplots(figsize=(6, 3.5))
        ax.plot([r["step"] for r in evals], [r["perplexity"] for r in evals], marker="o")
        ax.set_yscale("log")
        ax.set_xlabel("optimizer step")
        ax.set_ylabel("held-out perplexity (masked LM)")
        ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(out_dir / "perplexity.png", dpi=110)
        plt.close(fig)
    return {"eval": str(out_dir)}


def _paths(value: str, flag: str) -> list[str]:
    paths = [p.strip() for p in value.split(",") if p.strip()]
    if not paths:
        raise JiyiError(f"{flag} is empty: give files or folders, comma-separated.")
    return paths
