"""Settings from the environment, `.env` and the TOML file; operator changes to the catalogue."""

from __future__ import annotations

from pathlib import Path

import pydantic
import pytest

from service.catalogue_keeper import initial_catalogue
from service.config import Settings
from service.pb.router.v1 import router_pb2 as pb
from service.router import ModelRouter

CONFIG = """
default_mode = "cost"

[custom_modes.frugal-genius]
latency = 0.0
cost = 0.5
quality = 0.5

[model_overrides."openai/gpt-4o-mini"]
quality = 0.99
ttft_s = 0.05
tokens_per_s = 900

[[extra_models]]
id = "acme/house-model"
context_length = 32768
prompt_price_per_mtok = 0.0
completion_price_per_mtok = 0.0
supported_parameters = ["tools"]
quality = 1.0
ttft_s = 0.01
tokens_per_s = 5000
"""


@pytest.fixture
def config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "router.toml"
    path.write_text(CONFIG)
    monkeypatch.setenv("ROUTER_CONFIG_FILE", str(path))
    monkeypatch.setenv("ROUTER_STATE_DIR", str(tmp_path / "state"))
    return path


def test_the_config_file_sets_modes_overrides_and_models(config_file: Path) -> None:
    settings = Settings()
    assert settings.default_mode == "cost"
    assert settings.custom_modes["frugal-genius"].as_tuple() == (0.0, 0.5, 0.5)
    catalogue, _ = initial_catalogue(settings)
    models = {m.id: m for m in catalogue.models}
    tuned = models["openai/gpt-4o-mini"]
    assert (tuned.quality, tuned.ttft_s, tuned.tokens_per_s) == (0.99, 0.05, 900)
    assert not tuned.quality_estimated
    assert tuned.quality_source == tuned.latency_source == "operator"
    house = models["acme/house-model"]
    assert (house.prompt_price, house.quality, house.realtime) == (0.0, 1.0, True)

    router = ModelRouter(catalogue, settings)
    decision = router.route(pb.RouteRequest(custom_mode="frugal-genius"))
    assert decision.model == "acme/house-model"
    assert decision.catalogue_version == catalogue.version
    tools = pb.Constraints(required_parameters=["tools"], allow_models=["acme/*"])
    assert router.route(pb.RouteRequest(constraints=tools)).model == "acme/house-model"


def test_the_environment_wins_over_the_file(
    config_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ROUTER_DEFAULT_MODE", "speed")
    assert Settings().default_mode == "speed"


@pytest.mark.parametrize(
    "bad",
    [
        "[custom_modes.speed]\nlatency = 1\ncost = 0\nquality = 0",
        "[custom_modes.zero]\nlatency = 0\ncost = 0\nquality = 0",
        '[model_overrides."a/b"]\nquality = 2',
        '[model_overrides."a/b"]\ncolour = "blue"',
        '[[extra_models]]\nid = "no-author"\ncontext_length = 1\nprompt_price_per_mtok = 0\n'
        "completion_price_per_mtok = 0\nquality = 0\nttft_s = 0\ntokens_per_s = 1",
        'default_mode = "fastest"',
    ],
)
def test_a_bad_config_file_is_refused_with_a_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, bad: str
) -> None:
    path = tmp_path / "router.toml"
    path.write_text(bad)
    monkeypatch.setenv("ROUTER_CONFIG_FILE", str(path))
    with pytest.raises(pydantic.ValidationError):
        Settings()


def test_the_key_comes_from_the_environment_or_dotenv(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("OPENROUTER_API_KEY", raising=False)
    monkeypatch.delenv("ROUTER_OPENROUTER_API_KEY", raising=False)
    assert Settings().openrouter_api_key is None
    (tmp_path / ".env").write_text("OPENROUTER_API_KEY=sk-or-v1-from-dotenv\n")
    from_dotenv = Settings().openrouter_api_key
    assert from_dotenv is not None
    assert from_dotenv.get_secret_value() == "sk-or-v1-from-dotenv"
    monkeypatch.setenv("OPENROUTER_API_KEY", "sk-or-v1-from-env")
    settings = Settings()
    assert settings.openrouter_api_key is not None
    assert settings.openrouter_api_key.get_secret_value() == "sk-or-v1-from-env"
    assert "from-env" not in repr(settings)
    assert "from-env" not in str(settings.model_dump())


@pytest.mark.parametrize(("given", "level"), [("debug", "DEBUG"), ("Warning", "WARNING")])
def test_the_log_level_is_read_in_any_case(
    given: str, level: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ROUTER_LOG_LEVEL", raising=False)
    assert Settings().log_level == "INFO"
    monkeypatch.setenv("ROUTER_LOG_LEVEL", given)
    assert Settings().log_level == level


@pytest.mark.parametrize("given", ["verbose", "TRACE", "", "10"])
def test_an_unknown_log_level_is_refused(given: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROUTER_LOG_LEVEL", given)
    with pytest.raises(pydantic.ValidationError, match="log_level"):
        Settings()
