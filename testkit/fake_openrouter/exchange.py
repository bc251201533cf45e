"""A chat request as the fake understands it, and the attempt that answers it."""

from __future__ import annotations

from dataclasses import dataclass

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
    candidates: tuple[Resolution, ...]
    prefs: ProviderPreferences
    prompt_tokens: int
    max_tokens: int | None
    stream: bool
    tools: bool


@dataclass(frozen=True)
class Served:
    """The attempt that answers."""

    ask: Ask
    resolution: Resolution
    endpoint: Endpoint

    @property
    def row(self) -> Model:
        return self.resolution.served

    @property
    def model(self) -> str:
        return str(self.row["id"])

    def default_text(self) -> str:
        return DEFAULT_TEXT.format(model=self.model)
