"""Settings of the router: `ROUTER_*` environment variables, a `.env` file, and a TOML file.

The TOML file is `ROUTER_CONFIG_FILE`, else `router.toml` in the working directory if present.
Environment variables win over the file. The OpenRouter key is also read from the usual
`OPENROUTER_API_KEY`.
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, SecretStr, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from service.callers import KEY_CHARS
from service.redis_link import DEFAULT_KEY_PREFIX, DEFAULT_TIMEOUT_S, check_url
from service.scorer import MAX_PRICE_PER_TOKEN, MAX_TTFT_S, MIN_TOKENS_PER_S
from service.vocabulary import MODES

NAMED_MODES = tuple(MODES)
DEFAULT_CONFIG_FILE = Path("router.toml")
# Caller names become metric labels: short identifiers only.
CALLER_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,31}")
MIN_CALLER_KEY_CHARS = 16
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR"]


class ModeWeights(BaseModel):
    model_config = ConfigDict(extra="forbid")

    latency: float = Field(ge=0)
    cost: float = Field(ge=0)
    quality: float = Field(ge=0)

    def as_tuple(self) -> tuple[float, float, float]:
        return (self.latency, self.cost, self.quality)


class ModelOverride(BaseModel):
    """An operator's figures for one model; they replace the catalogue's and count as measured."""

    model_config = ConfigDict(extra="forbid")

    quality: float | None = Field(default=None, ge=0, le=1)
    ttft_s: float | None = Field(default=None, ge=0, le=MAX_TTFT_S)
    tokens_per_s: float | None = Field(default=None, ge=MIN_TOKENS_PER_S)


class ExtraModel(BaseModel):
    """A model the operator adds to the catalogue (e.g. one OpenRouter does not list yet)."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=r"^[^/\s]+/\S+$")
    name: str = ""
    context_length: int = Field(gt=0)
    max_output_tokens: int = Field(default=0, ge=0)
    prompt_price_per_mtok: float = Field(ge=0, le=MAX_PRICE_PER_TOKEN * 1e6)
    completion_price_per_mtok: float = Field(ge=0, le=MAX_PRICE_PER_TOKEN * 1e6)
    input_modalities: list[str] = Field(default_factory=lambda: ["text"])
    supported_parameters: list[str] = Field(default_factory=list)
    quality: float = Field(ge=0, le=1)
    ttft_s: float = Field(ge=0, le=MAX_TTFT_S)
    tokens_per_s: float = Field(ge=MIN_TOKENS_PER_S)


class Settings(BaseSettings):
    # Errors name the setting and what is wrong with it, never its value: some values are keys.
    model_config = SettingsConfigDict(
        env_prefix="ROUTER_", env_file=".env", extra="ignore", hide_input_in_errors=True
    )

    grpc_host: str = "127.0.0.1"
    grpc_port: int = Field(default=50051, ge=0, le=65535)
    http_host: str = "127.0.0.1"
    http_port: int = Field(default=8000, ge=0, le=65535)
    catalogue_path: Path | None = None
    state_dir: Path = Path(".router-state")
    default_mode: str = "balanced"
    default_top_k: int = Field(default=5, ge=1, le=1000)
    default_prompt_tokens: int = Field(default=1000, ge=0)
    default_output_tokens: int = Field(default=500, ge=0)
    custom_modes: dict[str, ModeWeights] = Field(default_factory=dict)
    model_overrides: dict[str, ModelOverride] = Field(default_factory=dict)
    extra_models: list[ExtraModel] = Field(default_factory=list)
    shutdown_grace_s: float = Field(default=5.0, ge=0)
    log_level: LogLevel = "INFO"

    openrouter_base_url: str = "https://openrouter.ai/api/v1"
    openrouter_api_key: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("ROUTER_OPENROUTER_API_KEY", "OPENROUTER_API_KEY"),
    )
    openrouter_timeout_s: float = Field(default=30.0, gt=0)
    refresh_interval_s: float = Field(default=600.0, ge=0, description="0 disables refreshes")
    # A refreshed catalogue smaller than this share of the current one is refused as implausible.
    refresh_min_share: float = Field(default=0.5, gt=0, le=1)
    # Endpoint stats are swept over every routable model, these top models of each mode first;
    # each refresh fetches at most per_second x refresh_interval_s (see service/endpoint_sweep.py).
    endpoint_stats_models: int = Field(default=10, ge=0, description="0 disables endpoint stats")
    endpoint_stats_concurrency: int = Field(default=4, ge=1)
    endpoint_stats_per_second: float = Field(default=5.0, gt=0)

    max_attempts: int = Field(default=4, ge=1, le=20, description="candidates tried per call")
    completion_timeout_s: float = Field(default=60.0, gt=0, description="when no deadline is set")
    max_body_bytes: int = Field(
        default=8 * 2**20, ge=1024, description="larger REST bodies are refused with 413"
    )
    attempt_timeout_s: float = Field(default=30.0, gt=0, description="one non-streamed attempt")
    first_token_timeout_s: float = Field(default=20.0, gt=0)
    stream_idle_timeout_s: float = Field(default=30.0, gt=0)
    daily_spend_limit_usd: float | None = Field(default=None, ge=0)
    # Near the limit: "refuse" answers RESOURCE_EXHAUSTED once a call no longer fits;
    # "cheaper" also leans routing toward cost from `cheaper_from_share` of the limit on.
    spend_policy: Literal["refuse", "cheaper"] = "refuse"
    cheaper_from_share: float = Field(default=0.8, gt=0, le=1)
    # The forms taken are in service/redis_link.py. Out of repr: the URL may hold a password.
    redis_url: str | None = Field(
        default=None, repr=False, description="e.g. redis://127.0.0.1:6379/0"
    )
    # Every key the router writes starts with it: routers on one Redis with different
    # prefixes share nothing.
    redis_key_prefix: str = DEFAULT_KEY_PREFIX
    # The longest a request waits for Redis before it goes on without it.
    redis_timeout_s: float = Field(default=DEFAULT_TIMEOUT_S, gt=0)
    # The response cache (service/response_cache.py): whether a request that does not say is
    # cached, how long an answer is kept, the largest answer kept, and how many in memory.
    response_cache: bool = False
    response_cache_ttl_s: int = Field(default=300, ge=1)
    response_cache_max_entry_bytes: int = Field(default=256 * 1024, ge=1)
    response_cache_memory_entries: int = Field(default=1024, ge=0)
    # How long a decision can be looked up by its id (GetDecision, GET /decisions/{id}), and
    # how many this process keeps in memory (all it keeps without Redis).
    decision_record_ttl_s: float = Field(default=3600.0, gt=0)
    decision_records_local: int = Field(default=10_000, ge=1)
    # How often replicas sharing Redis exchange circuits, learned latency and the catalogue
    # (service/shared_state.py); 0 keeps each replica's to itself.
    shared_state_interval_s: float = Field(default=0.5, ge=0)
    # Turns that carry a session key keep their session's model (see service/sticky.py).
    sticky_sessions: bool = True
    sticky_session_ttl_s: float = Field(default=1800.0, gt=0, description="renewed by each turn")
    # Decisions cached in process (L1) and in Redis (L2); see "Decision cache" in the README.
    decision_cache: bool = True
    decision_cache_size: int = Field(default=10_000, ge=1, description="L1 entries")
    decision_cache_ttl_s: float = Field(default=60.0, gt=0)
    # Token counts are rounded to this many significant digits (2: at most 5% off).
    decision_cache_digits: int = Field(default=2, ge=1, le=9)
    # A live latency figure moving less than this share keeps cached decisions.
    decision_cache_live_shift: float = Field(default=0.05, ge=0)
    # Off by default: free variants share a small allowance per account and their endpoints may
    # log prompts. On, the router keeps within the allowance and falls back to paid models.
    free_models: bool = False
    # Callers' API keys, name -> key; none: every caller is served (see service/callers.py).
    api_keys: dict[str, SecretStr] = Field(default_factory=dict)
    # Load shedding (service/shedding.py; "Load shedding" in the README): requests in flight in
    # one process, gRPC and REST together, beyond which a request is refused at once.
    max_concurrent_calls: int = Field(default=256, ge=1, description="all but completions")
    max_concurrent_completions: int = Field(default=256, ge=1, description="streams included")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        path = Path(os.environ.get("ROUTER_CONFIG_FILE", DEFAULT_CONFIG_FILE))
        sources = [init_settings, env_settings, dotenv_settings, file_secret_settings]
        if path.is_file():
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=path))
        return tuple(sources)

    @field_validator("custom_modes")
    @classmethod
    def _custom_modes_are_usable(cls, modes: dict[str, ModeWeights]) -> dict[str, ModeWeights]:
        for name, weights in modes.items():
            if name in NAMED_MODES:
                raise ValueError(f"custom mode {name!r} would shadow the named mode of that name")
            total = sum(weights.as_tuple())
            if total <= 0:
                raise ValueError(f"custom mode {name!r} has weights that are all zero")
            if not math.isfinite(total):
                raise ValueError(f"custom mode {name!r} has weights that do not sum to a number")
        return modes

    @field_validator("api_keys")
    @classmethod
    def _api_keys_are_usable(cls, keys: dict[str, SecretStr]) -> dict[str, SecretStr]:
        # Entries are named by position: a name may be a key put in the wrong place.
        owners: dict[str, int] = {}
        for entry, (name, key) in enumerate(keys.items(), start=1):
            if not CALLER_NAME.fullmatch(name):
                raise ValueError(
                    f"entry {entry}: a caller name is a letter then up to 31 letters, digits, _, -"
                )
            secret = key.get_secret_value()
            if len(secret) < MIN_CALLER_KEY_CHARS or not KEY_CHARS.fullmatch(secret):
                raise ValueError(
                    f"entry {entry}: a key is at least {MIN_CALLER_KEY_CHARS} printable ASCII "
                    "characters, no spaces"
                )
            if secret in owners:
                raise ValueError(f"entries {owners[secret]} and {entry} have the same key")
            owners[secret] = entry
        return keys

    @field_validator("redis_url")
    @classmethod
    def _redis_url_is_usable(cls, url: str | None) -> str | None:
        if url:
            check_url(url)
        return url

    @field_validator("redis_key_prefix")
    @classmethod
    def _redis_key_prefix_keeps_hash_tags(cls, prefix: str) -> str:
        # Keys that must share a slot carry a hash tag ({day}); a brace before it would win.
        if "{" in prefix or "}" in prefix:
            raise ValueError("redis_key_prefix may not contain { or }")
        return prefix

    @field_validator("log_level", mode="before")
    @classmethod
    def _log_level_in_any_case(cls, level: object) -> object:
        return level.upper() if isinstance(level, str) else level

    @field_validator("default_mode")
    @classmethod
    def _default_mode_is_named(cls, mode: str) -> str:
        if mode not in NAMED_MODES:
            raise ValueError(f"default_mode must be one of {', '.join(NAMED_MODES)}")
        return mode

    @property
    def grpc_target(self) -> str:
        return f"{self.grpc_host}:{self.grpc_port}"
