"""`jiyi serve` on a classification or multi-label run (any format: PyTorch, ONNX, int8),
optionally with a memory (`jiyi memory build`).

>>> service = ClassificationService(jiyi.load("runs/demo"), Memory.open("runs/demo-mem"))
>>> app = create_app(Settings(), service)
>>> # POST /v1/predict {"texts": ["a moving, funny film"]} ->
>>> # {"predictions": [{"label": "pos", "score": 0.93, "probabilities": {...}}]}

With a labelled memory, predictions are kNN-augmented as `jiyi predict --memory` makes them
(`neighbours` lists the nearest rows); with answers in it (--payload), POST /v1/ask answers
from the nearest stored question. /v1/explain needs the PyTorch model and captum, /v1/embed the
PyTorch model: with an ONNX or int8 model they answer 501. Explanations run on a copy of the
model and tokenizer, made on the first one (`ExplainingClassifier`), so they never share a
module or a tokenizer with predictions on the other thread.
"""

import copy
from collections.abc import Hashable
from pathlib import Path
from typing import Any

from jiyi.data.readers import label_sort_key
from jiyi.errors import JiyiError
from jiyi.serve.api import Api
from jiyi.serve.errors import ApiError
from jiyi.serve.explainer import install_checkpoints, plan_steps
from jiyi.serve.routes import add_embed, add_explain, add_faq, add_memory
from jiyi.serve.schemas import InfoResponse, PredictResponse
from jiyi.serve.service import Service
from jiyi.serve.settings import Settings


class ExplainingClassifier:
    """What `jiyi.inspect.explain.explain_text` needs of a `Classifier`, with a private copy of
    its model (checkpoints on every module: see `jiyi.serve.explainer`) and tokenizer."""

    def __init__(self, classifier: Any) -> None:
        self.model = copy.deepcopy(classifier.model).eval()
        self.tokenizer = copy.deepcopy(classifier.tokenizer)
        self.max_length = int(classifier.max_length)
        self.multilabel = bool(classifier.multilabel)
        self.labels = list(classifier.labels)
        self.thresholds = classifier.thresholds
        self.calibration = classifier.calibration  # probabilities as /v1/predict gives them
        self.hooks = install_checkpoints(self.model)


class ClassificationService(Service):
    """A loaded classifier (any format: PyTorch, ONNX, int8), optionally with a memory, and what
    each endpoint does with them.

    The constructor does the slow, failure-prone work up front (tuning kNN-augmented
    prediction, loading the memory's encoder, a first forward pass), so a bad model or memory
    fails before the port is bound.
    """

    kind = "text-classification"
    info_model = InfoResponse
    takes_memory = True

    def __init__(self, classifier: Any, memory: Any = None, *, name: str | None = None):
        meta = dict(getattr(classifier, "meta", {}) or {})
        if meta.get("text_pair_column"):
            raise JiyiError(
                f"{classifier.model_dir}: this run was trained on text pairs; jiyi serve "
                "handles single texts."
            )
        super().__init__(classifier, memory, name=name, folder=Path(classifier.model_dir))
        self.clf = classifier
        self.format = str(meta.get("format", "torch"))
        self.task = str(
            meta.get("task") or ("multilabel" if classifier.multilabel else "classification")
        )
        self.max_length = int(classifier.max_length)
        self.encoder_path = str(classifier.model_dir)
        self.labelled = memory is not None and bool(memory.labels())
        manifest = memory.manifest if memory is not None else {}
        self.faq = memory is not None and bool(
            manifest.get("payload_columns") or manifest.get("answer_column") or "ask" in manifest
        )
        self.explain_unavailable = self._explain_unavailable()
        self.embed_unavailable = (
            None
            if self.format == "torch"
            else f"embeddings need the PyTorch model; this one is {self.format}."
        )
        self._augmented: Any = None
        self._augmented_seq: Any = None
        self._explaining: ExplainingClassifier | None = None  # made by the first explanation
        self._plan_tokenizer: Any = None  # the event loop's own, to count an explanation's cost
        self._specials = (0, 0)  # special tokens before and after a window's content
        if self.explain_unavailable is None:
            from jiyi.data.collate import SpecialTemplate

            self._plan_tokenizer = copy.deepcopy(classifier.tokenizer)
            template = SpecialTemplate.from_tokenizer(self._plan_tokenizer)
            self._specials = (len(template.prefix), len(template.suffix))
        if memory is not None:
            _ = memory.encoder  # load it now (and check its fingerprint)
        if self.labelled:
            self._augmenter()
        self.labels = list(classifier.labels)
        self._refresh_info()
        self.clf.predict(["warm up"])

    @staticmethod
    def load_predictor(run_dir: str, threads: int | None = None) -> Any:
        from jiyi.predict import load

        return load(run_dir, threads=threads)

    def _explain_unavailable(self) -> str | None:
        if self.format != "torch":
            return (
                f"explanations need the PyTorch model; this one is {self.format} (serve the "
                "original run to explain)."
            )
        try:
            import captum.attr  # noqa: F401
        except ImportError:
            return "explanations need captum, which is not installed: pip install 'jiyi[inspect]'."
        return None

    # -- predictions

    def _augmenter(self) -> Any:
        """The kNN-augmented predictor, rebuilt when the memory changed (rows added here or by
        another process): labels, k, temperature and λ as `jiyi predict --memory` has them."""
        from jiyi.memory.predict import AugmentedPredictor

        self.memory.refresh()
        seq = self.memory.state.seq
        if self._augmented is None or seq != self._augmented_seq:
            self._augmented = AugmentedPredictor(self.clf, self.memory)
            if self._augmented_seq is not None:
                self._refresh_info()  # rows came from elsewhere (another process)
            self._augmented_seq = seq
        return self._augmented

    def predict(self, texts: list[str], neighbours: Hashable) -> list[dict[str, Any]]:
        if self.labelled:
            return self._augmenter().predict(texts, neighbours=int(neighbours or 0))
        return self.clf.predict(texts)

    # -- explanations and embeddings

    def explain_steps(self, text: str, steps: int, max_cost: int) -> int:
        """Tokens x steps as `explain_text` will run them: every window of a text longer than
        the run's max_length (half a window apart) with its special tokens, times the steps."""
        from jiyi.inspect.attribution import window_spans
        from jiyi.models import quiet_transformers

        with quiet_transformers():
            n = len(self._plan_tokenizer(text, add_special_tokens=False)["input_ids"])
        specials = sum(self._specials)
        budget = max(1, self.max_length - specials)
        spans = window_spans(n, budget, max(1, budget // 2))
        return plan_steps(sum(e - s + specials for s, e in spans), steps, max_cost)

    def explain(self, text: str, steps: int) -> dict[str, Any]:
        import numpy as np

        from jiyi.inspect.explain import explain_text

        if self._explaining is None:  # on the explanation worker, the one thread that uses it
            self._explaining = ExplainingClassifier(self.clf)
        record = explain_text(
            self._explaining,  # type: ignore[arg-type]
            text,
            n_steps=steps,
            internal_batch_size=8,  # a backward pass (not interruptible) stays short
            keep_maps=True,
            max_k=1,
            n_random=1,
        )  # the deletion test is not returned: keep it to its minimum
        scores = record["scores"]["words"]["integrated_gradients"]
        maps = record["attention"]["maps"]
        return {
            "label": record["predicted"],
            "probabilities": record["probabilities"],
            "words": [
                {"word": w["text"], "score": float(s)}
                for w, s in zip(record["words"], scores, strict=True)
            ],
            "tokens": record["tokens"],
            "attention": {
                "layers": record["attention"]["layers"],
                "heads": record["attention"]["heads"],
                "maps": None if maps is None else np.round(np.asarray(maps, float), 4).tolist(),
            },
        }

    # -- the memory

    def query(self, texts: list[str], k: int) -> dict[str, Any]:
        return {"results": self.memory.query(texts, k=k)}

    def add(
        self,
        texts: list[str],
        labels: list[Any] | None,
        payload: list[Any] | None,
        ids: list[str] | None,
    ) -> dict[str, Any]:
        new_ids = self.memory.add(texts, labels=labels, payload=payload, ids=ids)
        self._refresh_info()
        return {"ids": new_ids, "rows": len(self.memory)}

    def ask(self, question: str, top_k: int) -> dict[str, Any]:
        from jiyi.memory.faq import ask

        r = ask(self.memory, [question], top_k=top_k)[0]
        keys = ("answered", "answer", "score", "matched_question", "id", "threshold")
        keys += ("threshold_from", "calibrated", "confidence")
        return {k: r[k] for k in keys} | {"alternatives": r["alternatives"]}

    def _refresh_info(self) -> None:
        """What /v1/info shows of the memory and the labels, computed on the worker thread
        (the event loop reads the result, never the memory while it changes)."""
        if self.memory is None:
            return
        from jiyi.memory.classify import extend_labels

        counts = self.memory.label_counts()
        names = sorted(counts, key=label_sort_key)  # Memory.labels(), without counting again
        self.labelled = bool(names)
        self.labels = extend_labels(self.clf.labels, names) if names else list(self.clf.labels)
        self.memory_info = {
            "rows": len(self.memory),
            "labels": dict(sorted(counts.items())),
            "faq": self.faq,
        }

    def info(self, settings: Settings) -> dict[str, Any]:
        return self.common_info(settings) | {
            "features": {
                "predict": True,
                "explain": self.explain_unavailable is None,
                "embed": self.embed_unavailable is None,
                "memory": self.memory is not None,
                "ask": self.faq,
            },
        }

    def describe(self) -> str:
        return f"model {self.name} ({self.format}, {len(self.labels)} labels)"

    # -- the routes

    def add_routes(self, api: Api) -> None:
        """POST /v1/predict (labels; kNN-augmented with a labelled memory, `neighbours` lists
        the nearest rows), then the shared routes, all of which apply."""
        PredictRequest = api.requests.predict

        @api.app.post(
            "/v1/predict",
            response_model=PredictResponse,
            response_model_exclude_none=True,
            **api.v1(),
        )
        async def predict(req: PredictRequest) -> dict[str, Any]:  # type: ignore[valid-type]
            if req.neighbours and not self.labelled:
                raise ApiError(
                    422,
                    "neighbours: listing neighbours needs a labelled memory (serve with --memory).",
                )
            return {"predictions": await api.submit(req.texts, key=req.neighbours)}

        add_explain(api, self)
        add_embed(api, self)
        add_memory(api, self)
        add_faq(api, self)


__all__ = ["ClassificationService"]
