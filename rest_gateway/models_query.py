"""The query of `GET /models`: the listing's own parameters, and the request to rank the
catalogue for, flat and derived from the proto: `mode` or `custom_mode` (as in `/route`), or
`weights` written `latency,cost,quality`; the profile's `prompt_tokens` and `output_tokens`; and
each field of `Constraints` under its own name, a list by repeating it
(`deny_providers=openai&deny_providers=google`). Any of them ranks the listing."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, create_model, field_validator, model_validator

from rest_gateway.proto_models import request_fields
from rest_gateway.schemas import UINT32_MAX
from service.pb.router.v1 import router_pb2 as pb
from service.vocabulary import parse_weights

MAX_LIMIT = 10_000
# The policy of a RouteRequest but its weights, which are a message: `weights` is text here.
POLICIES = [
    f.name
    for f in pb.RouteRequest.DESCRIPTOR.oneofs_by_name["policy"].fields
    if f.message_type is None
]
PROFILE = request_fields(pb.RequestProfile.DESCRIPTOR)
CONSTRAINTS = request_fields(pb.Constraints.DESCRIPTOR)


class Listing(BaseModel):
    """The listing's own parameters and `weights`; the other ranking fields are derived."""

    model_config = ConfigDict(extra="forbid")

    query: str = Field(default="", description="case-insensitive substring of the id or name")
    author: str = Field(default="", description="exact author, e.g. openai")
    limit: int = Field(default=0, ge=0, le=MAX_LIMIT, description="0: all")
    offset: int = Field(default=0, ge=0, le=UINT32_MAX)
    weights: str | None = Field(
        default=None,
        description="rank with explicit weights latency,cost,quality, e.g. 0.5,0.3,0.2",
    )

    @field_validator("weights")
    @classmethod
    def _three_numbers(cls, weights: str | None) -> str | None:
        if weights is not None:
            parse_weights(weights)
        return weights

    @model_validator(mode="after")
    def _one_policy(self) -> Listing:
        given = [name for name in (*POLICIES, "weights") if getattr(self, name) is not None]
        if len(given) > 1:
            raise ValueError(f"give at most one of {', '.join(POLICIES)}, weights (got {given})")
        return self

    def _given(self, fields: dict[str, Any]) -> dict[str, Any]:
        """The fields among `fields` that the query sets, as the message takes them."""
        return self.model_dump(include=set(fields), exclude_none=True, exclude_defaults=True)

    def to_pb(self) -> pb.ListModelsRequest:
        request = pb.ListModelsRequest(
            query=self.query, author=self.author, limit=self.limit, offset=self.offset
        )
        policy = self._given(dict.fromkeys(POLICIES))
        profile, constraints = self._given(PROFILE), self._given(CONSTRAINTS)
        if self.weights is not None:
            policy["weights"] = parse_weights(self.weights)
        if policy or profile or constraints:
            request.ranking.CopyFrom(pb.RouteRequest(**policy))
            if profile:
                request.ranking.profile.CopyFrom(pb.RequestProfile(**profile))
            if constraints:
                request.ranking.constraints.CopyFrom(pb.Constraints(**constraints))
        return request


if TYPE_CHECKING:
    ModelsQuery = Listing
else:
    _route = request_fields(pb.RouteRequest.DESCRIPTOR)
    ModelsQuery = create_model(
        "ModelsQuery",
        __base__=Listing,
        **{name: _route[name] for name in POLICIES},
        **PROFILE,
        **CONSTRAINTS,
    )
