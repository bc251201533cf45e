"""Settings of the router, read from `ROUTER_*` environment variables and a `.env` file."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

NAMED_MODES = ("speed", "cost", "quality", "balanced")


class ModeWeights(BaseModel):
    latency: float = Field(ge=0)
    cost: float = Field(ge=0)
    quality: float = Field(ge=0)

    def as_tuple(self) -> tuple[float, float, float]:
        return (self.latency, self.cost, self.quality)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ROUTER_", env_file=".env", extra="ignore")

    grpc_host: str = "127.0.0.1"
    grpc_port: int = Field(default=50051, ge=0, le=65535)
    http_host: str = "127.0.0.1"
    http_port: int = Field(default=8000, ge=0, le=65535)
    catalogue_path: Path | None = None
    default_mode: str = "balanced"
    default_top_k: int = Field(default=5, ge=1, le=1000)
    default_prompt_tokens: int = Field(default=1000, ge=0)
    default_output_tokens: int = Field(default=500, ge=0)
    custom_modes: dict[str, ModeWeights] = Field(default_factory=dict)
    shutdown_grace_s: float = Field(default=5.0, ge=0)

    @field_validator("custom_modes")
    @classmethod
    def _custom_modes_are_usable(cls, modes: dict[str, ModeWeights]) -> dict[str, ModeWeights]:
        for name, weights in modes.items():
            if name in NAMED_MODES:
                raise ValueError(f"custom mode {name!r} would shadow the named mode of that name")
            if sum(weights.as_tuple()) <= 0:
                raise ValueError(f"custom mode {name!r} has weights that are all zero")
        return modes

    @field_validator("default_mode")
    @classmethod
    def _default_mode_is_named(cls, mode: str) -> str:
        if mode not in NAMED_MODES:
            raise ValueError(f"default_mode must be one of {', '.join(NAMED_MODES)}")
        return mode

    @property
    def grpc_target(self) -> str:
        return f"{self.grpc_host}:{self.grpc_port}"
