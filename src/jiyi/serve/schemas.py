"""The JSON bodies of `jiyi serve`: every request and response model, as /openapi.json shows them.

Responses are plain pydantic models. Requests are built per app by `request_models(settings)`,
so their limits (--max-texts, --max-chars) are the server's and the OpenAPI document shows them:

>>> requests = request_models(Settings(max_texts=8))
>>> requests.predict(texts=["a film"] * 9)      # ValidationError: texts: at most 8 items

Every text is checked for lone UTF-16 surrogates (`no_surrogates`): JSON can spell them, UTF-8
cannot.
"""

from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    model_validator,
)

from jiyi.serve.settings import Settings


def no_surrogates(value: Any) -> Any:
    """Reject lone UTF-16 surrogates (JSON escapes like "\\ud800"): they are not text."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError("contains a lone surrogate escape (\\ud800-\\udfff)") from None
    elif isinstance(value, dict):
        for k, v in value.items():
            no_surrogates(k)
            no_surrogates(v)
    elif isinstance(value, list):
        for v in value:
            no_surrogates(v)
    return value


Clean = AfterValidator(no_surrogates)
Label = Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=r"\S"), Clean]
RowId = Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=r"\S"), Clean]


class StrictModel(BaseModel):  # a request body: no unknown fields, no type coercion
    model_config = ConfigDict(extra="forbid", strict=True)


class ErrorDetail(BaseModel):
    code: str
    message: str


class ErrorResponse(BaseModel):
    error: ErrorDetail


class Neighbour(BaseModel):
    id: str
    score: float
    label: str | list[str] | None
    weight: float


class Prediction(BaseModel):
    label: str | list[str]
    score: float
    probabilities: dict[str, float]
    neighbours: list[Neighbour] | None = None


class PredictResponse(BaseModel):
    predictions: list[Prediction]


class Entity(BaseModel):
    start: int = Field(description="character offset into the text (a token index for tokens)")
    end: int = Field(description="exclusive: text[start:end] is the entity's text")
    text: str
    type: str
    score: float = Field(description="mean probability of the predicted tags over its words")


class EntityPrediction(BaseModel):
    text: str | None = Field(None, description="the input text (for texts)")
    tokens: list[str] | None = Field(None, description="the input words (for tokens)")
    tags: list[str] | None = Field(None, description="one tag per word (for tokens)")
    entities: list[Entity]


class EntityResponse(BaseModel):
    predictions: list[EntityPrediction]


class QaAnswer(BaseModel):
    question: str
    answer: str = Field(description='a span of the context; "" when the model abstains')
    start: int | None = Field(
        description="character offset into the context (code points); null with no answer"
    )
    end: int | None = Field(description="exclusive: context[start:end] is the answer")
    score: float = Field(
        description="P(start) * P(end) of the span; of the no-answer position when it abstains"
    )


class QaAnswers(BaseModel):
    answers: list[QaAnswer]


class WordScore(BaseModel):
    word: str
    score: float


class Attention(BaseModel):
    layers: int
    heads: int
    maps: list[list[list[list[float]]]] | None


class ExplainResponse(BaseModel):
    label: str | list[str]
    probabilities: dict[str, float]
    words: list[WordScore]
    tokens: list[str]
    attention: Attention
    steps: int = Field(
        description="integrated-gradients steps run: fewer than asked for a long text, to stay "
        "within --max-explain-cost (tokens x steps)"
    )
    steps_requested: int


class EmbedResponse(BaseModel):
    vectors: list[list[float]]
    dim: int


class Hit(BaseModel):
    id: str
    score: float
    text: str
    label: str | list[str] | None
    payload: dict[str, Any] | None


class QueryResponse(BaseModel):
    results: list[list[Hit]]


class AddResponse(BaseModel):
    ids: list[str]
    rows: int


class Alternative(BaseModel):
    answer: Any
    score: float
    matched_question: str
    id: str


class AskResponse(BaseModel):
    answered: bool
    answer: Any
    score: float
    matched_question: str
    id: str
    threshold: float | None
    threshold_from: str | None = Field(
        None,
        description="where the threshold came from: validation (calibrated), entries "
        "(uncalibrated: measured on the FAQ's own questions), or null (no threshold)",
    )
    calibrated: bool = False
    confidence: float | None = Field(
        None,
        description="P(right) from the memory's confidence model (the threshold applies to it); "
        "null when the memory has none and the threshold applies to the score",
    )
    alternatives: list[Alternative]


class Batching(BaseModel):
    enabled: bool
    max_batch_size: int
    max_wait_ms: float


class MemoryInfo(BaseModel):
    rows: int
    labels: dict[str, int]
    faq: bool


class Features(BaseModel):
    predict: bool
    explain: bool
    embed: bool
    memory: bool
    ask: bool


class InfoResponse(BaseModel):
    model: str
    format: str
    task: str
    labels: list[str]
    max_length: int
    batching: Batching
    memory: MemoryInfo | None
    features: Features


class NerInfoResponse(InfoResponse):
    entity_types: list[str]
    scheme: str


class QaInfoResponse(InfoResponse):
    stride: int
    max_answer_length: int
    null_threshold: float


class Status(BaseModel):
    status: str


@dataclass(frozen=True)
class RequestModels:
    """The request bodies of one app (`request_models`), by endpoint."""

    predict: type[BaseModel]  # POST /v1/predict of a classification run
    entities: type[BaseModel]  # POST /v1/predict of a NER run
    explain: type[BaseModel]
    embed: type[BaseModel]
    query: type[BaseModel]  # POST /v1/memory/query
    add: type[BaseModel]  # POST /v1/memory/add
    ask: type[BaseModel]  # POST /v1/ask of a FAQ memory
    qa: type[BaseModel]  # POST /v1/ask of a QA run


def request_models(s: Settings) -> RequestModels:
    """Request bodies, their limits taken from the settings (so /openapi.json shows them)."""
    Text = Annotated[
        str, StringConstraints(min_length=1, max_length=s.max_chars, pattern=r"\S"), Clean
    ]
    Texts = Annotated[list[Text], Field(min_length=1, max_length=s.max_texts)]

    class PredictRequest(StrictModel):
        texts: Texts
        neighbours: int = Field(0, ge=0, le=20, description="with a labelled memory only")

    Word = Annotated[
        str, StringConstraints(min_length=1, max_length=s.max_chars, pattern=r"\S"), Clean
    ]
    Words = Annotated[list[Word], Field(min_length=1, max_length=s.max_chars)]
    Sentences = Annotated[list[Words], Field(min_length=1, max_length=s.max_texts)]

    class EntityRequest(StrictModel):
        """Either `texts` (entities with character offsets) or `tokens` (pre-tokenised
        sentences, one list of words each: entities with token indices and every word's tag)."""

        texts: Texts | None = None
        tokens: Sentences | None = Field(
            None, description="pre-tokenised sentences (lists of words) instead of texts"
        )

        @model_validator(mode="after")
        def _one_input(self) -> "EntityRequest":
            if (self.texts is None) == (self.tokens is None):
                raise ValueError("give either texts or tokens (lists of words), not both")
            return self

    class ExplainRequest(StrictModel):
        text: Text
        steps: int = Field(32, ge=1, le=200, description="integrated-gradients steps")

    class EmbedRequest(StrictModel):
        texts: Texts

    class QueryRequest(StrictModel):
        texts: Texts
        k: int = Field(5, ge=1, le=50)

    class AddRequest(StrictModel):
        texts: Texts
        labels: (
            Annotated[list[Label | list[Label] | None], Field(max_length=s.max_texts)] | None
        ) = None
        payload: (
            Annotated[list[Annotated[dict[str, Any], Clean] | None], Field(max_length=s.max_texts)]
            | None
        ) = None
        ids: Annotated[list[RowId], Field(max_length=s.max_texts)] | None = None

    class AskRequest(StrictModel):
        question: Text
        top_k: int = Field(3, ge=1, le=10)

    class QaRequest(StrictModel):
        """One question about one context (`question`, `context`: one answer back), or several
        (`questions`, `contexts`, a context for each question: {"answers": [...]} back)."""

        question: Text | None = None
        context: Text | None = Field(None, description="the passage to find the answer in")
        questions: Texts | None = None
        contexts: Texts | None = Field(None, description="one context per question")

        @model_validator(mode="after")
        def _pairs(self) -> "QaRequest":
            single = self.question is not None or self.context is not None
            several = self.questions is not None or self.contexts is not None
            if single and several:
                raise ValueError("give question and context, or questions and contexts, not both")
            if several:
                if self.questions is None:
                    raise ValueError("questions is missing: give one question per context")
                if self.contexts is None:
                    raise ValueError("contexts is missing: give one context per question")
                if len(self.contexts) != len(self.questions):
                    raise ValueError(
                        f"contexts: {len(self.contexts)} given for {len(self.questions)} "
                        "questions; give one each"
                    )
            elif self.question is None:
                raise ValueError("question is missing: give a question and its context")
            elif self.context is None:
                raise ValueError("context is missing: give the passage to find the answer in")
            return self

    return RequestModels(
        predict=PredictRequest,
        entities=EntityRequest,
        explain=ExplainRequest,
        embed=EmbedRequest,
        query=QueryRequest,
        add=AddRequest,
        ask=AskRequest,
        qa=QaRequest,
    )
