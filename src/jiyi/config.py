"""Typed configuration: the dataclass is the single source of the CLI flags, their `--help` text
(the attribute docstrings), the YAML keys of `--config`, and the run directory's `config.yaml`.

    jiyi train --config configs/minilm-sentiment.yaml --lr 3e-5   # flags override the file
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import itertools
import textwrap
import types
import typing
from dataclasses import dataclass, fields
from functools import cache
from pathlib import Path
from typing import Any, ClassVar

from jiyi.errors import JiyiError
from jiyi.lora import LoraFlags, check_lora_flags
from jiyi.precision import PRECISIONS
from jiyi.tasks import TASKS, MethodConfig, TaskSpec, adapter, get_task, task_names
from jiyi.tasks.registry import CALIBRATIONS, POOLINGS, tasks_taking

TRUNCATIONS = ("head", "tail", "head+tail")
LOSSES = ("ce", "focal")  # `jiyi train --loss` (jiyi.imbalance)
BATCH_ORDERS = ("auto", "random", "length")  # `jiyi train --batch-order` (jiyi.loop.grouped_epochs)
ON_BAD_ROWS = ("error", "skip")
TAG_SCHEMES = ("BIO", "BIOES")
PRESETS = ("tiny", "small", "base")  # `jiyi pretrain --architecture` from scratch


@dataclass
class LoopConfig:
    """Settings of the one optimisation loop, shared by `jiyi train` and `jiyi pretrain`."""

    output: str | None = None
    """The run directory to create (or to continue with --resume)."""
    epochs: float = 3.0
    """Passes over the training data (fractions allowed)."""
    max_steps: int | None = None
    """Stop after this many optimizer steps (overrides --epochs)."""
    batch_size: int = 32
    """Examples per optimizer step (per process), before gradient accumulation."""
    grad_accum: int = 1
    """Accumulate gradients over this many batches per optimizer step."""
    lr: float = 5e-5
    """Peak learning rate of AdamW."""
    max_length: int = 128
    """Maximum tokens per text (pair included); longer texts are cut as --truncation says."""
    seed: int = 42
    """Random seed: data order, dropout, initialisation of the head, the validation split."""
    warmup_ratio: float = 0.06
    """Fraction of the optimizer steps spent warming the learning rate up linearly from 0."""
    weight_decay: float = 0.01
    """AdamW weight decay (not applied to biases and LayerNorm weights)."""
    l1: float = 0.0
    """L1 penalty: add λ·Σ|w| over the weights weight decay applies to (not biases, LayerNorm weights) to the training loss; logged as `l1` beside `loss` in metrics.jsonl (0 disables it)."""
    l1_prox: bool = False
    """Apply --l1 as a proximal step instead: after each optimizer step every penalised weight shrinks toward 0 by lr·λ and the small ones become exactly 0 (the plain penalty under AdamW rarely makes exact zeros)."""
    max_grad_norm: float = 1.0
    """Clip the gradient norm to this value (0 disables clipping)."""
    save_steps: int | None = None
    """Also write a resumable checkpoint every N optimizer steps (one is always written at each evaluation)."""
    keep_checkpoints: int = 2
    """How many of the most recent checkpoints to keep while training (model/ holds the best weights)."""
    resume: bool = False
    """Continue the run in --output from its last checkpoint, data position included."""
    keep_final_checkpoint: bool = False
    """Keep the last --keep-checkpoints resumable checkpoints (weights, optimizer, scheduler, RNG) once the run finishes, to --resume it with more --epochs later; by default a finished run is model/ plus logs."""
    precision: str = "auto"
    """Arithmetic of the training steps: auto (the default: bf16 where the CPU has avx512_bf16/AMX or the GPU supports it, else fp32; the choice is printed and saved); fp32; bf16 (bfloat16 autocast; weights and optimizer state stay float32). Evaluation runs in float32, as predict does. --bf16 is --precision bf16."""
    log_every: int = 20
    """Write the training loss to metrics.jsonl every N optimizer steps."""
    threads: int | None = None
    """CPU threads for torch (default: all cores)."""

    def validate_loop(self) -> None:
        """Reject impossible settings of the loop, naming the flag at fault."""
        for flag, value in (
            ("--batch-size", self.batch_size),
            ("--grad-accum", self.grad_accum),
            ("--log-every", self.log_every),
            ("--keep-checkpoints", self.keep_checkpoints),
        ):
            if value < 1:
                raise JiyiError(f"{flag} must be at least 1, got {value}.")
        if self.max_length < 8:
            raise JiyiError(f"--max-length must be at least 8 tokens, got {self.max_length}.")
        if self.epochs is not None and self.epochs <= 0 and self.max_steps is None:
            raise JiyiError(f"--epochs must be positive, got {self.epochs}.")
        if self.max_steps is not None and self.max_steps < 1:
            raise JiyiError(f"--max-steps must be at least 1, got {self.max_steps}.")
        if self.save_steps is not None and self.save_steps < 1:
            raise JiyiError(f"--save-steps must be at least 1, got {self.save_steps}.")
        if self.lr is not None and self.lr <= 0:
            raise JiyiError(f"--lr must be positive, got {self.lr}.")
        if not 0 <= self.warmup_ratio < 1:
            raise JiyiError(f"--warmup-ratio must be in [0, 1), got {self.warmup_ratio}.")
        if self.weight_decay < 0:
            raise JiyiError(f"--weight-decay must be >= 0, got {self.weight_decay}.")
        if not self.l1 >= 0:  # NaN too
            raise JiyiError(f"--l1 must be >= 0 (0 turns the L1 penalty off), got {self.l1}.")
        if self.l1_prox and self.l1 == 0:
            raise JiyiError("--l1-prox applies the --l1 penalty: give --l1 LAMBDA > 0 with it.")
        if self.max_grad_norm < 0:
            raise JiyiError(
                f"--max-grad-norm must be >= 0 (0 disables clipping), got {self.max_grad_norm}."
            )
        check_choice("--precision", self.precision, PRECISIONS)


@dataclass
class TrainConfig(LoraFlags, MethodConfig, LoopConfig):
    """Settings of `jiyi train`. Every field is a flag (`--max-length`) and a YAML key (`max_length`)."""

    epochs: float | None = None  # type: ignore[assignment]
    """Passes over the training data (fractions allowed). Default: 3 (ner 5), raised on small data to reach the task's fewest optimizer steps (300; ner and qa 600), at most 20 (jiyi.tasks.presets)."""
    lr: float | None = None  # type: ignore[assignment]
    """Peak learning rate of AdamW. Default: by task and model size (5e-5; ner 1e-4 for a small model such as minilm or me5-small; 2e-5 for a large one; ten times that with --lora-r; jiyi.tasks.presets)."""
    model: str = "minilm"
    """Model to fine-tune: the alias `minilm`, a local Hugging Face folder, or a Hub id (online only)."""
    trim_vocab: bool = False
    """Classification, multilabel, NER and QA: before fine-tuning, trim the model's vocabulary to the pieces of the training text as the task's tokenizer encodes it (NER: the pre-split words; QA: questions and contexts); the other embedding rows are dropped (most of a multilingual model) and the training text gets the same tokens (rarer pieces of other text fall back to smaller ones or [UNK]; predict warns past 5% [UNK]). The trimmed base is RUN_DIR/trimmed-base."""
    freeze_embeddings: bool = False
    """Classification, multilabel, NER and QA: freeze the embedding layer (word, position and token-type embeddings and their LayerNorm): no gradient, left out of the optimizer; faster CPU steps with a large vocabulary."""
    train: str | None = None
    """Training data: CSV, TSV, JSONL, Parquet or a `datasets` folder."""
    validation: str | None = None
    """Validation data; when absent, a stratified slice of --train is carved out (--validation-fraction)."""
    test: str | None = None
    """Test data, evaluated with the best model at the end of training (written to RUN_DIR/eval)."""
    task: str = "classification"
    """classification (one label per text), multilabel (a JSON list or delimited labels), ner (token tags), qa (extractive question answering: an answer span of the context) or seq2seq (summarization / translation: generate the target text from the source)."""
    text_column: str = "text"
    """Column holding the text."""
    text_pair_column: str | None = None
    """Column holding the second text of a pair (e.g. NLI hypothesis); none by default."""
    label_column: str = "label"
    """Column holding the label (strings or ints)."""
    label_delimiter: str | None = None
    """Multilabel only: the delimiter between labels; by default the first of | ; , found."""
    calibration: str | None = None
    """Classification and multilabel: after training, fit calibrated probabilities on the validation data: temperature (default; one T, or one per label for multilabel, decisions unchanged), vector (a scale and bias per class; per-label Platt for multilabel) or none. Stored in model/jiyi.json and used by predict, evaluate, serve; `jiyi calibrate` refits it."""
    loss: str = "ce"
    """Classification and multilabel: the training loss, ce (cross-entropy; binary per label for multilabel) or focal (each example's cross-entropy times (1 - p)^--focal-gamma, p the probability of its true class: examples already learnt count less, which helps a rare class)."""
    focal_gamma: float = 2.0
    """--loss focal: the exponent gamma of (1 - p)^gamma (0 is cross-entropy; larger discounts easy examples more)."""
    class_weights: str | None = None
    """Classification and multilabel: weigh the loss by class, computed on the training split only: balanced (n / (classes x count); multilabel: each label's pos_weight = negatives / positives, clipped to [0.01, 100]) or a FILE (CSV label,weight rows or a JSON object {"label": weight}; a weight > 0 for every label). Logged in metrics.jsonl, shown in the report. Without it or --loss focal, train warns when the largest class has more than 10 times the examples of the smallest."""
    eval_batch_size: int = 128
    """Examples per forward pass when evaluating and predicting."""
    truncation: str = "head+tail"
    """How a long text is cut: head, tail or head+tail (keep the first quarter and the last three quarters)."""
    batch_order: str = "auto"
    """Which texts share a training batch: random texts (more accurate; their steps skip the padding on a BERT-shaped encoder, else are padded to each batch's longest text), length (texts of similar length: least padding, fastest; on a MiniLM classifier 0.28 points less accuracy over 15 seeds) or auto (random for classifiers on BERT-shaped encoders, length elsewhere)."""
    dropout: float | None = None
    """Override the model's hidden and attention dropout (e.g. 0.2 against over-fitting)."""
    patience: int | None = None
    """Stop when the validation metric has not improved for this many evaluations (default: off, or 3 when the default --epochs was raised above 3 for small data)."""
    metric: str | None = None
    """Validation metric that selects the best model and drives early stopping (e.g. f1_macro; default accuracy, f1 for ner and qa)."""
    evals_per_epoch: int = 1
    """Validation passes per epoch."""
    augment: str | None = None
    """Augment the training texts: none, all, or a comma list of delete,swap,insert,substitute."""
    augment_rate: float = 0.1
    """Fraction of the words of a text that one augmentation operation touches."""
    augment_copies: int = 1
    """Augmented copies made of each training example."""
    on_bad_rows: str = "error"
    """What to do with a malformed row: error (stop and name it) or skip (drop it and count it)."""
    delimiter: str | None = None
    """CSV/TSV field delimiter of every data file (`;`, `tab`, `|`, ...); by default guessed from the header and the first lines among , ; tab |."""
    validation_fraction: float = 0.1
    """Share of --train carved out as validation data when --validation is absent."""
    tag_scheme: str | None = None
    """ner: train with BIO or BIOES tags (the data's tags are converted; default: the scheme of --train)."""
    stride: int | None = None
    """ner: sub-words of overlap between the windows a long sentence is cut into (default: a quarter of --max-length, at most 32). qa: context tokens shared by consecutive windows of a long context (default: half the context room of a window, i.e. (--max-length - --max-length // 2 - 3) // 2, at most 128)."""
    tokens_column: str = "tokens"
    """ner, JSONL data: the key holding the list of tokens."""
    tags_column: str = "tags"
    """ner, JSONL data: the key holding the list of tags."""
    strict: bool = False
    """ner: seqeval's strict mode (an entity counts only with exactly its scheme's tags)."""
    question_column: str = "question"
    """qa, flat rows (JSONL, CSV, ...): the column holding the question."""
    context_column: str = "context"
    """qa, flat rows: the column holding the context the answer is cut from."""
    answers_column: str = "answers"
    """qa, flat rows: the column holding the answers, {"text": [...], "answer_start": [...]} or a list of {"text", "answer_start"} ([] for none)."""
    max_answer_length: int = 30
    """qa: the longest answer predicted, in tokens."""
    null_threshold: float = 0.0
    """qa: answer "" when the no-answer score ([CLS] start + end logits) exceeds the best span's by more than this (a large value never abstains; negative abstains more)."""
    source_column: str = "source"
    """seq2seq: the column holding the source text (the document to summarise, the sentence to translate)."""
    target_column: str = "target"
    """seq2seq: the column holding the target text (the summary, the translation)."""
    max_target_length: int = 128
    """seq2seq: maximum tokens per target; longer targets are cut (their end token kept)."""
    decoder: str | None = None
    """seq2seq: warm-start an encoder-decoder from --model (the encoder) and this BERT-style checkpoint (the decoder, cross-attention added); may be the same folder as --model."""
    share_weights: bool = False
    """seq2seq with --decoder: the encoder's parameters become the decoder's own tensors (tie_encoder_decoder; needs one architecture and size for both)."""
    num_beams: int = 1
    """seq2seq: beams of beam search when generating (1: greedy decoding)."""
    length_penalty: float | None = None
    """seq2seq, beam search: exponent on the length that divides a beam's log-probability (> 1 favours longer outputs; default 1.0)."""
    max_new_tokens: int | None = None
    """seq2seq: the most tokens generated per output (default: --max-target-length)."""
    no_repeat_ngram_size: int | None = None
    """seq2seq: never generate an n-gram of this size twice in one output (default: off)."""

    def __post_init__(self) -> None:
        check_choice("--task", self.task, task_names())
        spec = get_task(self.task)
        if self.metric is None:
            self.metric = spec.default_metric
        adapter(spec).defaults(self)  # e.g. qa's --stride: half of the smallest context room
        if self.stride is None:
            self.stride = min(32, max(0, (self.max_length - 2) // 4))
        self.validate()

    def validate(self, *, require_paths: bool = False) -> None:
        """Reject contradictory or impossible settings, naming the flag at fault."""
        check_choice("--task", self.task, task_names())
        spec = get_task(self.task)
        if self.tag_scheme is not None:
            check_choice("--tag-scheme", self.tag_scheme, TAG_SCHEMES)
        assert self.stride is not None
        if self.stride < 0:
            raise JiyiError(f"--stride must be >= 0, got {self.stride}.")
        check_choice("--truncation", self.truncation, TRUNCATIONS)
        check_choice("--on-bad-rows", self.on_bad_rows, ON_BAD_ROWS)
        if self.delimiter is not None:
            from jiyi.data.reading import parse_delimiter

            self.delimiter = parse_delimiter(self.delimiter)
        check_choice("--metric", self.metric, spec.metrics)
        self.validate_loop()
        for flag, value in (
            ("--eval-batch-size", self.eval_batch_size),
            ("--evals-per-epoch", self.evals_per_epoch),
            ("--augment-copies", self.augment_copies),
        ):
            if value < 1:
                raise JiyiError(f"{flag} must be at least 1, got {value}.")
        if self.dropout is not None and not 0 <= self.dropout < 1:
            raise JiyiError(f"--dropout must be in [0, 1), got {self.dropout}.")
        if self.patience is not None and self.patience < 1:
            raise JiyiError(f"--patience must be at least 1, got {self.patience}.")
        if not 0 < self.validation_fraction < 1:
            raise JiyiError(
                f"--validation-fraction must be in (0, 1), got {self.validation_fraction}."
            )
        if not 0 < self.augment_rate <= 1:
            raise JiyiError(f"--augment-rate must be in (0, 1], got {self.augment_rate}.")
        self.refuse_other_tasks_flags(spec)
        if self.calibration is not None:
            check_choice("--calibration", self.calibration, CALIBRATIONS)
        check_choice("--pooling", self.pooling, POOLINGS)
        for flag, given, capability in (  # flags only some tasks take (a TaskSpec field each)
            ("--trim-vocab", self.trim_vocab, "trim_vocab"),
            ("--freeze-embeddings", self.freeze_embeddings, "trim_vocab"),
            ("--calibration", self.calibration is not None, "calibrate"),
            ("--pooling", self.pooling != "cls", "pooling"),
        ):
            if given and not getattr(spec, capability):
                raise JiyiError(
                    f"{flag} applies to --task {tasks_taking(capability)}, not {spec.name}."
                )
        check_lora_flags(self, spec)  # jiyi.lora: --lora-r and the flags that go with it
        check_choice("--loss", self.loss, LOSSES)
        if self.loss != "ce" or self.class_weights is not None or self.focal_gamma != 2.0:
            from jiyi.imbalance import check_flags  # numpy: only when the flags are given

            check_flags(self, spec)
        adapter(spec).validate(self)  # the task's own flags (jiyi.tasks.<task>.validate)
        if require_paths:
            if not self.train and not self.resume:
                raise JiyiError("--train is required: the file of labelled training examples.")
            if not self.output:
                raise JiyiError("--output is required: the run directory to write.")

    def refuse_other_tasks_flags(self, spec: TaskSpec) -> None:
        """A flag only another task reads (its `TaskSpec.own_flags`), given with this --task, is
        refused: `--num-beams 4 --task ner` -> "--num-beams only applies to --task seq2seq"."""
        defaults = {f.name: f.default for f in fields(self)}
        for other in TASKS.values():
            if other.name == spec.name:
                continue
            for name in other.own_flags:
                if getattr(self, name) != defaults[name]:
                    raise JiyiError(f"{flag_name(name)} only applies to --task {other.name}.")


def check_choice(flag: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise JiyiError(f"{flag} must be one of {', '.join(choices)}; got {value!r}.")


# ---------------------------------------------------------------------------------------------
# dataclass -> argparse, YAML -> dataclass


def flag_name(field_name: str) -> str:
    """`max_length` -> `--max-length`."""
    return "--" + field_name.replace("_", "-")


@cache
def field_docs(cls: type) -> dict[str, str]:
    """Attribute docstrings of a dataclass: the string literal right after each field."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):  # a subclass's docstring wins over its base's
        if dataclasses.is_dataclass(klass):
            docs.update(_own_field_docs(klass))
    return docs


def _own_field_docs(cls: type) -> dict[str, str]:
    tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    body = tree.body[0].body  # type: ignore[attr-defined]
    docs: dict[str, str] = {}
    for node, nxt in itertools.pairwise(body):
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and isinstance(nxt, ast.Expr)
            and isinstance(nxt.value, ast.Constant)
            and isinstance(nxt.value.value, str)
        ):
            docs[node.target.id] = " ".join(nxt.value.value.split())
    return docs


def _base_type(cls: type, name: str) -> tuple[type, bool]:
    """The scalar type of a field and whether it is optional: `int | None` -> (int, True)."""
    hint = typing.get_type_hints(cls)[name]
    args = typing.get_args(hint)
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        rest = [a for a in args if a is not type(None)]
        return rest[0], True
    return hint, False


def _parse_value(flag: str, kind: type, raw: str) -> Any:
    if raw.lower() in ("none", "null") and kind is not str:
        return None
    try:
        if kind is bool:
            if raw.lower() in ("1", "true", "yes", "on"):
                return True
            if raw.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(raw)
        return kind(raw)
    except ValueError:
        raise JiyiError(f"{flag} expects {kind.__name__}, got {raw!r}.") from None


# The --help groups of the dataclass flags: ONE place says which group a field belongs to (the
# same name means the same thing in TrainConfig and PretrainConfig). A task's own flags
# (`TaskSpec.own_flags` + `TaskSpec.help_flags` in the registry) get one group per task.
FLAG_GROUPS: dict[str, tuple[str, ...]] = {
    "common": (
        "model", "from_model", "architecture", "tokenizer", "corpus", "train", "validation",
        "test", "output", "task", "resume", "keep_final_checkpoint",
    ),
    "data": (
        "text_column", "text_pair_column", "label_column", "delimiter",
        "on_bad_rows", "validation_fraction", "heldout_fraction", "max_length", "truncation",
        "shuffle_buffer",
    ),
    "optimisation": (
        "epochs", "max_steps", "lr", "batch_size", "grad_accum", "warmup_ratio", "max_grad_norm",
        "seed", "metric", "patience", "evals_per_epoch", "eval_steps", "eval_blocks",
        "eval_batch_size", "save_steps", "keep_checkpoints", "log_every", "precision", "threads",
        "batch_order",
    ),
    "regularisation": (
        "weight_decay", "dropout", "l1", "l1_prox", "augment", "augment_rate", "augment_copies",
        "loss", "focal_gamma", "class_weights",
        "trim_vocab", "freeze_embeddings", "calibration",
    ),
    "lora": ("lora_r", "lora_alpha", "lora_dropout", "lora_targets", "lora_merge"),
    "masked LM": ("mask_rate", "whole_word_mask"),
}  # fmt: skip
GROUP_TITLES = {
    "common": "common (what to train on, where the run goes)",
    "data": "data (columns, file format, lengths)",
    "optimisation": "optimisation (steps, learning rate, evaluation, checkpoints)",
    "regularisation": "regularisation and augmentation",
    "lora": "LoRA adapters (peft; classification, multilabel, ner, qa)",
    "masked LM": "masked LM",
}
# Fields whose values are one of a fixed set: argparse shows them as {a,b} and refuses others.
CHOICES: dict[str, tuple[str, ...]] = {
    "truncation": TRUNCATIONS,
    "batch_order": BATCH_ORDERS,
    "on_bad_rows": ON_BAD_ROWS,
    "tag_scheme": TAG_SCHEMES,
    "precision": PRECISIONS,
    "calibration": CALIBRATIONS,
    "loss": LOSSES,
    "pooling": POOLINGS,
}
# Older flags kept as aliases of a field's value: `--bf16` is `--precision bf16`, and the YAML
# key `bf16: true|false` (in the config.yaml of older runs) is `precision: bf16|fp32`, what
# those runs computed in (the default then).
FLAG_ALIASES: dict[str, tuple[str, str, str]] = {"bf16": ("precision", "bf16", "fp32")}
# Fields shown with a richer placeholder than their NAME (values not enforced by argparse).
METAVARS = {
    "architecture": "{" + ",".join(PRESETS) + "}|FILE.json",
    "delimiter": "CHAR",
    "train": "FILE",
    "validation": "FILE",
    "test": "FILE",
    "corpus": "FILES",
    "output": "RUN_DIR",
    "tokenizer": "DIR",
    "class_weights": "balanced|FILE",
}


def field_choices(name: str) -> tuple[str, ...] | None:
    """The fixed values of a field (`--task`: the registered tasks), None when it is open."""
    return task_names() if name == "task" else CHOICES.get(name)


def task_flag_groups() -> dict[str, tuple[str, ...]]:
    """Each task's group of `jiyi train --help`: its own flags, then the other flags it reads.
    A flag two tasks read (--stride: ner and qa) sits in the first task's group.

    >>> task_flag_groups()["seq2seq"][:2]
    ('decoder', 'share_weights')
    """
    return {name: spec.own_flags + spec.help_flags for name, spec in TASKS.items()}


def help_group_of(name: str) -> str:
    """The --help group of a field: a key of `FLAG_GROUPS`, or a task name."""
    for group, names in itertools.chain(FLAG_GROUPS.items(), task_flag_groups().items()):
        if name in names:
            return group
    raise KeyError(f"{name}: no --help group; add it to jiyi.config.FLAG_GROUPS")  # a bug


def flag_help(cls: type, name: str, default: Any) -> str:
    """A flag's help: its attribute docstring, then its default unless None (the docstring says
    what None means) or False (an off switch), escaped for argparse's % formatting."""
    text = field_docs(cls).get(name, "")
    if default is not None and default is not False:
        text += f" (default: {default})"
    return text.replace("%", "%%")


def add_dataclass_flags(
    parser: argparse.ArgumentParser,
    cls: type,
    skip: tuple[str, ...] = (),
    *,
    config_file: str | None = None,
) -> dict[str, Any]:
    """One flag per field, help from the attribute docstring, default left unset (None) so that
    values given on the command line can be told apart from the defaults and override YAML.

    Flags land in argument groups (`FLAG_GROUPS`, then one group per task), in the order the
    groups are declared. `config_file` (the help of the YAML file's flag) adds `--config
    FILE.yaml` to the common group: --config means the YAML file of settings in every verb.
    Returns the argument groups by name, for a verb to add its own flags to."""
    groups: dict[str, Any] = {}
    order = [*FLAG_GROUPS, *task_flag_groups()]
    present = {help_group_of(f.name) for f in fields(cls) if f.name not in skip}
    tasks = task_flag_groups()
    for name in order:
        if name in present or (name == "common" and config_file):
            title = GROUP_TITLES.get(name) or f"--task {name}"
            shared = [
                flag_name(f)
                for f in tasks.get(name, ())
                if help_group_of(f) != name and f not in skip
            ]
            also = f"also reads {', '.join(shared)} (above)" if shared else None
            groups[name] = parser.add_argument_group(title, description=also)
    if config_file:
        groups["common"].add_argument("--config", metavar="FILE.yaml", help=config_file)
    position = {n: i for i, n in enumerate(itertools.chain(*FLAG_GROUPS.values()))}
    for f in sorted(fields(cls), key=lambda f: position.get(f.name, len(position))):
        if f.name in skip:
            continue
        kind, _ = _base_type(cls, f.name)
        default = f.default if f.default is not dataclasses.MISSING else None
        group = groups[help_group_of(f.name)]
        help_text = flag_help(cls, f.name, default)
        if kind is bool:
            group.add_argument(
                flag_name(f.name),
                dest=f.name,
                action=argparse.BooleanOptionalAction,
                default=None,
                help=help_text,
            )
            continue
        choices = field_choices(f.name)
        metavar = None if choices else METAVARS.get(f.name, f.name.upper())
        group.add_argument(
            flag_name(f.name),
            dest=f.name,
            default=None,
            choices=choices,
            metavar=metavar,
            help=help_text,
        )
    names = {f.name for f in fields(cls)} - set(skip)
    for alias, (target, value, _) in FLAG_ALIASES.items():
        if target in names:
            groups[help_group_of(target)].add_argument(
                flag_name(alias),
                dest=target,
                action="store_const",
                const=value,
                help=f"the same as {flag_name(target)} {value}",
            )
    return groups


def build_config(cls: type, cli_values: dict[str, Any], config_file: str | None = None) -> Any:
    """Defaults < YAML file < flags. Unknown YAML keys and wrong types are errors naming the key."""
    values: dict[str, Any] = {}
    known = {f.name: f for f in fields(cls)}
    if config_file:
        values.update(load_yaml_config(config_file, cls))
    for name, raw in cli_values.items():
        if raw is None or name not in known:
            continue
        kind, _ = _base_type(cls, name)
        values[name] = raw if isinstance(raw, bool) else _parse_value(flag_name(name), kind, raw)
    return cls(**values)


def load_yaml_config(path: str, cls: type) -> dict[str, Any]:
    import yaml

    p = Path(path)
    if not p.is_file():
        raise JiyiError(f"--config {path}: no such file.")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise JiyiError(f"--config {path}{where}: not valid YAML ({e}). Fix the file.") from None
    except UnicodeDecodeError:
        raise JiyiError(f"--config {path}: not UTF-8 text.") from None
    if not isinstance(data, dict):
        raise JiyiError(
            f"--config {path}: expected a mapping of settings, got {type(data).__name__}."
        )
    known = {f.name for f in fields(cls)}
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = str(key).replace("-", "_")
        name = getattr(cls, "RENAMED_KEYS", {}).get(name, name)
        if name in FLAG_ALIASES and FLAG_ALIASES[name][0] in known:
            if not isinstance(value, bool):
                raise JiyiError(
                    f"--config {path}: key {key!r} expects true or false, got {value!r}."
                )
            target, when_true, when_false = FLAG_ALIASES[name]
            out[target] = when_true if value else when_false
            continue
        if name not in known:
            raise JiyiError(
                f"--config {path}: unknown key {key!r}. Known keys: {', '.join(sorted(known))}."
            )
        kind, optional = _base_type(cls, name)
        if value is None:
            if not optional:
                raise JiyiError(f"--config {path}: key {key!r} cannot be empty.")
            out[name] = None
        elif kind is float and isinstance(value, int | float) and not isinstance(value, bool):
            out[name] = float(value)
        elif kind is float and isinstance(value, str):
            out[name] = _parse_value(f"--config {path}: key {key!r}", float, value)
        elif not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise JiyiError(f"--config {path}: key {key!r} expects {kind.__name__}, got {value!r}.")
        else:
            out[name] = value
    return out


def config_to_yaml(config: Any) -> str:
    import yaml

    return yaml.safe_dump(dataclasses.asdict(config), sort_keys=False, allow_unicode=True)


@dataclass
class PretrainConfig(LoopConfig):
    """Settings of `jiyi pretrain`. Every field is a flag and a YAML key of --config."""

    RENAMED_KEYS: ClassVar[dict[str, str]] = {"config": "architecture"}  # YAML of older runs

    corpus: str | None = None
    """Text to pretrain on: files or folders, comma-separated (plain text, one text per line; JSONL with --text-column; .gz too). Streamed, never read whole."""
    validation: str | None = None
    """Held-out text for perplexity (files, comma-separated); by default --heldout-fraction of the corpus is held out."""
    from_model: str | None = None
    """Continue pretraining this encoder (domain adaptation): the alias `minilm`, a folder, a run. An MLM head tied to the input embeddings is created when it has none."""
    architecture: str | None = None
    """Pretrain from scratch with this architecture: tiny, small (4 layers, hidden 256, 4 heads), base (BERT-base), or a config.json of BERT settings."""
    tokenizer: str | None = None
    """Tokenizer folder (from `jiyi tokenizer train`); required from scratch, default the model's own with --from."""
    trim_vocab: bool = False
    """With --from: first trim the encoder's vocabulary to the pieces of --corpus (RUN_DIR/trimmed-base); a multilingual model's masked-LM softmax and embedding update then cover the corpus's pieces only (e.g. 15k of me5-small's 250k), several times faster on a CPU."""
    text_column: str = "text"
    """Column holding the text in JSONL corpora."""
    mask_rate: float = 0.15
    """Share of the tokens of each sequence that are masked and predicted."""
    whole_word_mask: bool = False
    """Mask whole words (all their word pieces); for Chinese, words from jieba segmentation."""
    heldout_fraction: float = 0.005
    """Share of the corpus texts (chosen by a stable hash) held out for perplexity when --validation is absent."""
    eval_steps: int | None = None
    """Evaluate held-out perplexity every N optimizer steps (default: 10 times per run, and at the end of each epoch)."""
    eval_blocks: int = 256
    """Held-out sequences used for perplexity."""
    shuffle_buffer: int = 20000
    """Sequences held in the shuffle buffer (bounds memory whatever the corpus size)."""
    epochs: float = 1.0
    """Passes over the corpus (fractions allowed)."""
    lr: float | None = None  # type: ignore[assignment]
    """Peak learning rate of AdamW (default: 5e-4 from scratch, 5e-5 with --from)."""
    max_length: int = 128
    """Tokens per packed sequence: texts are joined with [SEP] and cut into sequences of this length."""
    batch_size: int = 32
    """Sequences per optimizer step (per process), before gradient accumulation."""

    def __post_init__(self) -> None:
        if self.lr is None:
            self.lr = 5e-5 if self.from_model else 5e-4
        self.validate()

    def validate(self, *, require_paths: bool = False) -> None:
        """Reject contradictory or impossible settings, naming the flag at fault."""
        self.validate_loop()
        if not 0 < self.mask_rate < 1:
            raise JiyiError(f"--mask-rate must be in (0, 1), got {self.mask_rate}.")
        if not 0 <= self.heldout_fraction < 0.5:
            raise JiyiError(f"--heldout-fraction must be in [0, 0.5), got {self.heldout_fraction}.")
        for flag, value in (
            ("--eval-blocks", self.eval_blocks),
            ("--shuffle-buffer", self.shuffle_buffer),
            ("--eval-steps", self.eval_steps or 1),
        ):
            if value < 1:
                raise JiyiError(f"{flag} must be at least 1, got {value}.")
        arch = self.architecture
        if self.from_model and arch:
            raise JiyiError(
                "--from and --architecture exclude each other: --from continues an existing "
                "encoder, --architecture builds a new one from scratch."
            )
        if self.trim_vocab and not self.from_model:
            raise JiyiError(
                "--trim-vocab trims the vocabulary of an existing encoder: give --from MODEL "
                "(from scratch, --tokenizer already holds only the corpus's pieces)."
            )
        if arch and arch.endswith((".yaml", ".yml")):
            raise JiyiError(
                f"--architecture {arch}: takes an architecture ({', '.join(PRESETS)} or a "
                "config.json); a YAML file of settings goes in --config."
            )
        if arch and arch not in PRESETS and not Path(arch).is_file():
            raise JiyiError(
                f"--architecture {arch}: not a preset ({', '.join(PRESETS)}) nor an existing "
                "config.json."
            )
        if require_paths and not self.resume:
            if not self.corpus:
                raise JiyiError("--corpus is required: the text files or folders to pretrain on.")
            if not self.from_model and not arch:
                raise JiyiError(
                    "say what to pretrain: --from MODEL (continue an encoder) or --architecture "
                    f"{'|'.join(PRESETS)}|FILE (from scratch)."
                )
            if arch and not self.tokenizer:
                raise JiyiError(
                    "--tokenizer is required from scratch: train one with `jiyi tokenizer train "
                    "--corpus ... --vocab-size N --output DIR`."
                )
        if require_paths and not self.output:
            raise JiyiError("--output is required: the run directory to write.")
