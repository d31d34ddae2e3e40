"""What `create_app` serves: a `Service`, one loaded run and what the endpoints do with it.

A service for a kind of run is a subclass in its own module (`classification.py`, `ner.py`,
`qa.py`); `jiyi.serve.services` maps the registry's `TaskSpec.service` names to them. Each says

- how it loads its run (`load_predictor`) and warms it up (its constructor: the slow,
  failure-prone work happens before the port is bound);
- what a gathered batch is (`predict(items, key)`, run on the batcher's one worker thread);
- what /v1/info shows (`info`, its model `info_model`) and how the start-up line names it
  (`describe`);
- which /v1 routes it has (`add_routes(api)`: its own, plus the shared ones of
  `jiyi.serve.routes`, whose refusals read the `*_unavailable` messages set here).

>>> service = NerService(NerTagger("runs/ner"))   # or services.load_service("runs/ner")
>>> app = create_app(Settings(), service)

`predict`, `embed` and the memory methods run on the batcher's one worker thread, `explain` on
the explanation worker (with a copy of the model), never on the event loop; `info` reads what
they left (it never touches the model).
"""

from collections.abc import Hashable
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from jiyi.errors import JiyiError
from jiyi.serve.api import Api
from jiyi.serve.schemas import InfoResponse
from jiyi.serve.settings import Settings


def embed_payload(
    model: Any, tokenizer: Any, texts: list[str], max_length: int, name: str | None = None
) -> dict[str, Any]:
    """{"vectors": one list of floats per text, "dim": their size} from `model`'s encoder,
    mean-pooled over the last layer and L2-normalised (`name`: the folder it came from; default
    the model's own `name_or_path`)."""
    from jiyi.inspect.embeddings import Encoder, embed_texts

    path = name if name is not None else str(getattr(model, "name_or_path", ""))
    encoder = Encoder(model.base_model, tokenizer, path)
    vectors = embed_texts(
        encoder, texts, pooling="mean", layers="-1", normalize=True, max_length=max_length
    )
    return {"vectors": vectors.tolist(), "dim": int(vectors.shape[1])}


def batching_info(settings: Settings) -> dict[str, Any]:
    """/v1/info's "batching": what the micro-batcher does with concurrent requests."""
    return {
        "enabled": settings.batching,
        "max_batch_size": settings.max_batch_size,
        "max_wait_ms": float(settings.max_wait_ms),
    }


def run_name(folder: Path, name: str | None = None) -> str:
    """The name /v1/info shows: `name`, else the run's folder (RUN_DIR for RUN_DIR/model)."""
    return name or (folder.parent.name if folder.name == "model" else folder.name)


class Service:
    """The base of every service: the loaded predictor, the run's name and format, the memory
    (only where `takes_memory`), and `/v1/embed` over the run's encoder.

    A subclass sets `task`, `kind` and `info_model`, and defines `load_predictor`, `predict`,
    `info`, `describe` and `add_routes`. The `*_unavailable` attributes hold why an endpoint
    answers 501 for this run (None: it works).
    """

    task = ""  # /v1/info's "task"
    kind = ""  # how messages name the run: "a NER run"
    info_model: type[BaseModel] = InfoResponse
    takes_memory = False  # whether --memory applies (kNN predictions, queries, FAQ answers)

    def __init__(
        self,
        predictor: Any,
        memory: Any = None,
        *,
        name: str | None = None,
        folder: Path | None = None,
    ) -> None:
        """`folder`: the model folder the run is named after (default: where the predictor's
        model was loaded from); `name` overrides that name."""
        if memory is not None and not self.takes_memory:
            raise JiyiError(
                f"--memory: a memory serves classification runs; this is a {self.kind} run. "
                "Serve it without --memory."
            )
        self.predictor = predictor
        self.memory = memory
        self.name = run_name(folder or Path(predictor.model.name_or_path), name)
        self.format = "torch"
        self.labels: list[str] = []
        self.max_length = 0
        self.encoder_path: str | None = None  # where /v1/embed's encoder came from
        self.labelled = False  # a labelled memory: predictions are kNN-augmented
        self.faq = False  # a memory with answers: POST /v1/ask
        self.memory_info: dict[str, Any] | None = None
        self.predict_unavailable: str | None = None
        self.explain_unavailable: str | None = None
        self.embed_unavailable: str | None = None
        self.memory_unavailable: str | None = None  # None: the memory endpoints apply

    @staticmethod
    def load_predictor(run_dir: str, threads: int | None = None) -> Any:
        """The run's predictor, loaded for serving (`threads`: torch / ONNX Runtime threads)."""
        raise NotImplementedError

    def predict(self, items: list[Any], key: Hashable) -> list[dict[str, Any]]:
        """One gathered batch -> one result row per item, in order (`key`: what the batcher
        grouped the requests by)."""
        raise NotImplementedError

    def info(self, settings: Settings) -> dict[str, Any]:
        """The body of GET /v1/info (`info_model`): `common_info` and the service's own keys."""
        raise NotImplementedError

    def common_info(self, settings: Settings) -> dict[str, Any]:
        """The keys of /v1/info every run shows (`InfoResponse`'s, less "features")."""
        return {
            "model": self.name,
            "format": self.format,
            "task": self.task,
            "labels": self.labels,
            "max_length": self.max_length,
            "batching": batching_info(settings),
            "memory": self.memory_info,
        }

    def describe(self) -> str:
        """How the start-up line names what is served: "model rt (torch, 2 labels)"."""
        raise NotImplementedError

    def add_routes(self, api: Api) -> None:
        """Add the /v1 routes after /v1/info, in the order /openapi.json lists them: predict,
        explain, embed, memory query and add, ask."""
        raise NotImplementedError

    def embed(self, texts: list[str]) -> dict[str, Any]:
        model, tokenizer = self.predictor.model, self.predictor.tokenizer
        return embed_payload(model, tokenizer, texts, self.max_length, self.encoder_path)

    # What the shared routes call once the matching `*_unavailable` is None (a classifier's).

    def explain_steps(self, text: str, steps: int, max_cost: int) -> int:
        """The integrated-gradients steps `explain` may run on `text` within `max_cost` tokens x
        steps (`jiyi.serve.explainer.plan_steps`); called on the event loop, so it must be
        cheap and not touch what the workers use."""
        raise NotImplementedError

    def explain(self, text: str, steps: int) -> dict[str, Any]:
        """Run on the explanation worker: its model must be the service's own copy, with
        `jiyi.serve.explainer.install_checkpoints` on it (cancellation, predictions first)."""
        raise NotImplementedError

    def query(self, texts: list[str], k: int) -> dict[str, Any]:
        raise NotImplementedError

    def add(
        self,
        texts: list[str],
        labels: list[Any] | None,
        payload: list[Any] | None,
        ids: list[str] | None,
    ) -> dict[str, Any]:
        raise NotImplementedError

    def ask(self, question: str, top_k: int) -> dict[str, Any]:
        raise NotImplementedError


__all__ = ["Service", "batching_info", "embed_payload", "run_name"]
