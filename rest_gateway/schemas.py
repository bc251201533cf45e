"""Request and response bodies of the REST API; each mirrors a message of `router.v1`."""

from __future__ import annotations

import json
from typing import Any, Literal

from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message
from pydantic import BaseModel, ConfigDict, Field, model_validator

from service.pb.router.v1 import router_pb2 as pb

ModeName = Literal["speed", "cost", "quality", "balanced"]
ModalityName = Literal["text", "image", "file", "audio", "video"]

MODES: dict[str, pb.Mode.ValueType] = {
    "speed": pb.MODE_SPEED,
    "cost": pb.MODE_COST,
    "quality": pb.MODE_QUALITY,
    "balanced": pb.MODE_BALANCED,
}
MODALITIES: dict[str, pb.Modality.ValueType] = {
    "text": pb.MODALITY_TEXT,
    "image": pb.MODALITY_IMAGE,
    "file": pb.MODALITY_FILE,
    "audio": pb.MODALITY_AUDIO,
    "video": pb.MODALITY_VIDEO,
}
FREE_FILTERS: dict[str, pb.FreeFilter.ValueType] = {
    "any": pb.FREE_FILTER_ANY,
    "only": pb.FREE_FILTER_ONLY,
    "exclude": pb.FREE_FILTER_EXCLUDE,
}


def as_json(message: Message) -> dict[str, object]:
    """A message as JSON with proto field names, every field present."""
    return MessageToDict(
        message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )


UINT32_MAX = 2**32 - 1


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class WeightsBody(Strict):
    latency: float = 0.0
    cost: float = 0.0
    quality: float = 0.0


class ConstraintsBody(Strict):
    min_context_tokens: int = Field(default=0, ge=0, le=UINT32_MAX)
    input_modalities: list[ModalityName] = Field(default_factory=list)
    required_parameters: list[str] = Field(default_factory=list)
    max_prompt_price_per_mtok: float | None = None
    max_completion_price_per_mtok: float | None = None
    max_request_cost_usd: float | None = None
    max_ttft_seconds: float | None = None
    allow_models: list[str] = Field(default_factory=list)
    deny_models: list[str] = Field(default_factory=list)
    allow_providers: list[str] = Field(default_factory=list)
    deny_providers: list[str] = Field(default_factory=list)
    free: Literal["any", "only", "exclude"] = "any"

    def to_pb(self) -> pb.Constraints:
        c = pb.Constraints(
            min_context_tokens=self.min_context_tokens,
            input_modalities=[MODALITIES[m] for m in self.input_modalities],
            required_parameters=self.required_parameters,
            allow_models=self.allow_models,
            deny_models=self.deny_models,
            allow_providers=self.allow_providers,
            deny_providers=self.deny_providers,
            free=FREE_FILTERS[self.free],
        )
        for name in (
            "max_prompt_price_per_mtok",
            "max_completion_price_per_mtok",
            "max_request_cost_usd",
            "max_ttft_seconds",
        ):
            value = getattr(self, name)
            if value is not None:
                setattr(c, name, value)
        return c


class ProfileBody(Strict):
    prompt_tokens: int = Field(
        default=0, ge=0, le=UINT32_MAX, description="0: the router's default estimate"
    )
    output_tokens: int = Field(
        default=0, ge=0, le=UINT32_MAX, description="0: the router's default estimate"
    )


class RouteBody(Strict):
    """Give at most one of `mode`, `custom_mode` and `weights`; none means the default mode."""

    mode: ModeName | None = None
    custom_mode: str | None = None
    weights: WeightsBody | None = None
    constraints: ConstraintsBody = Field(default_factory=ConstraintsBody)
    profile: ProfileBody = Field(default_factory=ProfileBody)
    top_k: int = Field(default=0, ge=0, le=1000, description="0: the router's default")

    @model_validator(mode="after")
    def _one_policy(self) -> RouteBody:
        given = [n for n in ("mode", "custom_mode", "weights") if getattr(self, n) is not None]
        if len(given) > 1:
            raise ValueError(f"give at most one of mode, custom_mode, weights (got {given})")
        return self

    def to_pb(self) -> pb.RouteRequest:
        request = pb.RouteRequest(
            constraints=self.constraints.to_pb(),
            profile=pb.RequestProfile(
                prompt_tokens=self.profile.prompt_tokens,
                output_tokens=self.profile.output_tokens,
            ),
            top_k=self.top_k,
        )
        if self.mode is not None:
            request.mode = MODES[self.mode]
        elif self.custom_mode is not None:
            request.custom_mode = self.custom_mode
        elif self.weights is not None:
            request.weights.CopyFrom(
                pb.Weights(
                    latency=self.weights.latency,
                    cost=self.weights.cost,
                    quality=self.weights.quality,
                )
            )
        return request


class ExplainBody(RouteBody):
    """The fields of `/route` (`top_k` is ignored), plus the model to explain."""

    model: str = Field(default="", description="a catalogue model id; empty: the winner alone")

    def to_explain_pb(self) -> pb.ExplainRequest:
        return pb.ExplainRequest(routing=self.to_pb(), model=self.model)


def _json_text(value: Any) -> str:
    """A parameter's JSON as the text of its `*_json` field. ASCII, so that a lone surrogate
    (a REST body may escape one) stays escaped; NaN is written as such. The router refuses both
    and names the field."""
    return json.dumps(value)


class ImageUrlBody(Strict):
    url: str
    detail: str = ""


class PartBody(Strict):
    type: Literal["text", "image_url"]
    text: str | None = None
    image_url: ImageUrlBody | None = None

    def to_pb(self) -> pb.ContentPart:
        if self.type == "text":
            return pb.ContentPart(text=self.text or "")
        if self.image_url is None:
            raise ValueError("an image_url part needs image_url")
        return pb.ContentPart(
            image_url=pb.ImageUrl(url=self.image_url.url, detail=self.image_url.detail)
        )


class MessageBody(Strict):
    role: str
    content: str | list[PartBody] = ""
    name: str = ""
    tool_call_id: str = ""
    tool_calls: list[dict[str, Any]] | None = None

    def to_pb(self) -> pb.ChatMessage:
        message = pb.ChatMessage(role=self.role, name=self.name, tool_call_id=self.tool_call_id)
        if isinstance(self.content, str):
            message.content = self.content
        else:
            message.parts.extend(p.to_pb() for p in self.content)
        if self.tool_calls is not None:
            message.tool_calls_json = _json_text(self.tool_calls)
        return message


class ParamsBody(BaseModel):
    """OpenAI-style generation parameters; any other field is passed to the model unchanged."""

    model_config = ConfigDict(extra="allow")

    max_tokens: int | None = Field(default=None, ge=1, le=UINT32_MAX)
    temperature: float | None = None
    top_p: float | None = None
    stop: list[str] | str | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    response_format: dict[str, Any] | None = None
    seed: int | None = None

    def to_pb(self) -> pb.GenerationParams:
        params = pb.GenerationParams()
        for name in ("max_tokens", "temperature", "top_p", "seed"):
            value = getattr(self, name)
            if value is not None:
                setattr(params, name, value)
        if self.stop is not None:
            params.stop.extend([self.stop] if isinstance(self.stop, str) else self.stop)
        for name in ("tools", "tool_choice", "response_format"):
            value = getattr(self, name)
            if value is not None:
                setattr(params, f"{name}_json", _json_text(value))
        if self.model_extra:
            params.extra_json = _json_text(self.model_extra)
        return params


class CompleteBody(RouteBody):
    """The routing fields of `/route`, plus OpenAI-style messages and parameters."""

    messages: list[MessageBody]
    params: ParamsBody = Field(default_factory=ParamsBody)

    def to_complete_pb(self) -> pb.CompleteRequest:
        return pb.CompleteRequest(
            routing=self.to_pb(),
            messages=[m.to_pb() for m in self.messages],
            params=self.params.to_pb(),
        )


class AttemptResult(BaseModel):
    model: str
    outcome: str
    http_status: int
    error: str
    ttft_seconds: float
    total_seconds: float
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float


class MessageResult(BaseModel):
    role: str
    content: str
    tool_calls: list[dict[str, Any]] | None = None

    @model_validator(mode="before")
    @classmethod
    def _parse_tool_calls(cls, data: Any) -> Any:
        """The message's `tool_calls_json` text (empty: none) as `tool_calls`."""
        if isinstance(data, dict) and "tool_calls_json" in data:
            data = dict(data)
            text = data.pop("tool_calls_json")
            data["tool_calls"] = json.loads(text) if text else None
        return data


class ChoiceResult(BaseModel):
    index: int
    message: MessageResult
    finish_reason: str


class UsageResult(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    cost_usd: float


class CompleteResult(BaseModel):
    id: str
    model: str
    provider: str
    choices: list[ChoiceResult]
    usage: UsageResult
    attempts: list[AttemptResult]
    decision_id: str
    catalogue_version: str


class ScoreTerms(BaseModel):
    latency: float
    cost: float
    quality: float


class Candidate(BaseModel):
    model: str
    score: float
    terms: ScoreTerms
    expected_cost_usd: float
    expected_latency_seconds: float
    quality_estimated: bool
    latency_estimated: bool
    quality_source: str = Field(description='e.g. "aa-leaderboard", "family-prior"')
    latency_source: str = Field(
        description='"learned", "openrouter-endpoints", or the catalogue\'s source'
    )
    ttft_seconds: float = Field(description="time to first token the latency was computed from")
    tokens_per_second: float = Field(description="throughput the latency was computed from")


class Weights(BaseModel):
    latency: float
    cost: float
    quality: float


class Profile(BaseModel):
    prompt_tokens: int
    output_tokens: int


class Normalisation(BaseModel):
    latency_min_seconds: float
    latency_max_seconds: float
    cost_floor_usd: float
    cost_max_usd: float


class RouteResult(BaseModel):
    model: str
    candidates: list[Candidate]
    decision_id: str
    catalogue_version: str
    weights: Weights
    eligible_models: int
    removed_by_constraint: dict[str, int]
    profile: Profile
    normalisation: Normalisation


class Figure(BaseModel):
    value: float
    source: str
    estimated: bool


class ModelExplanation(BaseModel):
    model: str
    rank: int = Field(description="1 is the winner; 0 when a constraint removed the model")
    score: float
    terms: ScoreTerms
    contributions: ScoreTerms = Field(description="each term times its weight; sum: the score")
    expected_cost_usd: float
    expected_latency_seconds: float
    ttft_seconds: Figure
    tokens_per_second: Figure
    quality: Figure
    prompt_price_per_mtok: float
    completion_price_per_mtok: float
    free: bool


class ExplainResult(BaseModel):
    winner: ModelExplanation
    subject: ModelExplanation
    excluded_by: str = Field(description="the constraint that removed the subject; empty if none")
    weights: Weights
    normalisation: Normalisation
    eligible_models: int
    catalogue_version: str
    profile: Profile
    summary: list[str]


class ModelInfo(BaseModel):
    id: str
    name: str
    author: str
    context_length: int
    max_output_tokens: int
    prompt_price_per_mtok: float
    completion_price_per_mtok: float
    input_modalities: list[str]
    output_modalities: list[str]
    supported_parameters: list[str]
    quality: float
    quality_estimated: bool
    ttft_seconds: float
    tokens_per_second: float
    latency_estimated: bool


class ModelList(BaseModel):
    models: list[ModelInfo]
    total: int
    catalogue_version: str


class Eligibility(BaseModel):
    models: int
    routable: int
    excluded_by_rule: dict[str, int]


class LatencyCalibration(BaseModel):
    ttft_ratio: float | None = None
    ttft_models: int
    throughput_ratio: float | None = None
    throughput_models: int


class CatalogueStatus(BaseModel):
    version: str
    models: int
    source: str
    last_refresh_attempt: float
    last_refresh_success: float
    last_refresh_error: str
    consecutive_refresh_failures: int
    stale: bool
    eligibility: Eligibility
    latency_calibration: LatencyCalibration


class RefreshResult(BaseModel):
    replaced: bool
    previous_version: str
    catalogue: CatalogueStatus


class ErrorDetail(BaseModel):
    code: str
    message: str


class ErrorBody(BaseModel):
    error: ErrorDetail
