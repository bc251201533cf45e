"""A chat request as the fake understands it, and the attempt that answers it."""

from __future__ import annotations

import secrets
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .catalogue import Model, Resolution
from .providers import Endpoint, ProviderPreferences

DEFAULT_TEXT = "This is a reply from {model} via the fake OpenRouter."


@dataclass(frozen=True)
class Ask:
    """What a chat request asks for, as far as the fake cares."""

    key: str
    user_id: str
    generation_id: str
    created: int
    started: float
    candidates: tuple[Resolution, ...]
    prefs: ProviderPreferences
    prompt_tokens: int
    max_tokens: int | None
    stream: bool
    tools: bool
    body: Mapping[str, Any]
    headers: Mapping[str, str]


@dataclass(frozen=True)
class Served:
    """The attempt that answers, after `failed` attempts on earlier models."""

    ask: Ask
    resolution: Resolution
    endpoint: Endpoint
    failed: tuple[Mapping[str, Any], ...]

    @property
    def row(self) -> Model:
        return self.resolution.served

    @property
    def model(self) -> str:
        return str(self.row["id"])

    def default_text(self) -> str:
        return DEFAULT_TEXT.format(model=self.model)

    def provider_response(self, status: int) -> dict[str, Any]:
        """One entry of the generation's `provider_responses`."""
        permaslug = str(self.row.get("canonical_slug") or self.model)
        return {
            "id": "chatcmpl-" + secrets.token_hex(12),
            "endpoint_id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{permaslug}/{self.endpoint.tag}")),
            "model_permaslug": permaslug,
            "provider_name": self.endpoint.provider_name,
            "latency": round((time.monotonic() - self.ask.started) * 1000),
            "status": status,
            "is_byok": False,
        }
