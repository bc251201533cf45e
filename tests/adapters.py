"""Every way into the router, asked the same question: gRPC, the REST gateway (beside the core
and in front of its gRPC port) and the `router` command (in process and with `--target`). Each
answer is brought to one comparable form, as is the scorer's own answer, so that a test can
hold them equal.

`ADAPTERS` is the table of them, which conftest's `adapter` fixture goes through.
`/v1/chat/completions` joins it once it routes: an adapter whose `route` asks it with the
question's routing fields and reads the chosen model back.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import grpc
import httpx
import pytest
from typer.testing import CliRunner

from cli.main import app
from service import catalogue
from service.config import Settings
from service.pb.router.v1 import router_pb2 as pb
from service.pb.router.v1.router_pb2_grpc import RouterStub
from service.scorer import Constraints, NoEligibleModel, Ranking, Scorer

HTTP_TIMEOUT_S = 30
runner = CliRunner()


@dataclass(frozen=True)
class Question:
    """One routing request, written once for each adapter."""

    message: pb.RouteRequest
    body: dict[str, Any]  # `/route`'s JSON body
    cli: list[str]  # the routing options of `router route`, `explore`, `explain`, `models`
    # The same request as the scorer takes it: weights and its own constraint keywords.
    weights: tuple[float, float, float]
    constraints: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Answer:
    model: str
    candidates: tuple[tuple[str, float], ...]  # (model, score), best first
    eligible: int
    removed: tuple[tuple[str, int], ...]  # sorted by constraint


@dataclass(frozen=True)
class Ranked:
    """A ranked listing: each model's place in the whole ranking, id and score."""

    models: tuple[tuple[int, str, float], ...]
    total: int
    eligible: int
    removed: tuple[tuple[str, int], ...]


@dataclass(frozen=True)
class Refusal:
    message: str  # with its white space made single spaces (the CLI wraps its lines)


def refusal(message: str) -> Refusal:
    return Refusal(" ".join(message.split()))


def _removed(removed: dict[str, int]) -> tuple[tuple[str, int], ...]:
    return tuple(sorted((k, int(v)) for k, v in removed.items()))


def answer_of(reply: dict[str, Any]) -> Answer:
    """A RouteResponse in its JSON form (REST, `router route --json`)."""
    return Answer(
        model=reply["model"],
        candidates=tuple((c["model"], c["score"]) for c in reply["candidates"]),
        eligible=reply["eligible_models"],
        removed=_removed(reply["removed_by_constraint"]),
    )


def ranked_of(reply: dict[str, Any]) -> Ranked:
    """A ranked ListModelsResponse in its JSON form."""
    return Ranked(
        models=tuple((m["rank"], m["id"], m["candidate"]["score"]) for m in reply["models"]),
        total=reply["total"],
        eligible=reply["eligible_models"],
        removed=_removed(reply["removed_by_constraint"]),
    )


def served_scorer(settings: Settings) -> Scorer:
    """The scorer over the catalogue the test server serves, set up as its router sets it up."""
    scorer = catalogue.load().scorer()
    scorer.set_free_available(settings.free_models)
    return scorer


def scorers_answer(
    scorer: Scorer, settings: Settings, question: Question, top_k: int
) -> Answer | Refusal:
    """What the scorer itself answers; `settings` give the default profile."""
    try:
        ranking = scorer_ranking(scorer, settings, question, top_k)
    except NoEligibleModel as exc:
        return refusal(str(exc))
    return Answer(
        model=ranking.best,
        candidates=tuple((c.model_id, c.score) for c in ranking.candidates),
        eligible=ranking.eligible,
        removed=_removed(ranking.removed),
    )


def scorer_ranking(scorer: Scorer, settings: Settings, question: Question, top_k: int) -> Ranking:
    profile = question.message.profile
    return scorer.rank(
        question.weights,
        prompt_tokens=profile.prompt_tokens or settings.default_prompt_tokens,
        output_tokens=profile.output_tokens or settings.default_output_tokens,
        top_k=top_k,
        constraints=Constraints(**question.constraints),
    )


def models_query(question: Question) -> dict[str, Any]:
    """`GET /models`'s query for the question: its routing fields, flat."""
    body = dict(question.body)
    query: dict[str, Any] = {**body.pop("constraints", {}), **body.pop("profile", {})}
    weights = body.pop("weights", None)
    if weights is not None:
        query["weights"] = f"{weights['latency']},{weights['cost']},{weights['quality']}"
    body.pop("top_k", None)
    return {**query, **body}


class Adapter(Protocol):
    def route(self, question: Question, top_k: int) -> Answer | Refusal: ...
    def rank_models(
        self, question: Question, *, author: str, limit: int, offset: int
    ) -> Ranked | Refusal: ...


class Grpc:
    def __init__(self, address: str) -> None:
        self.address = address

    def _call(self, method: str, request: Any) -> Any:
        with grpc.insecure_channel(self.address) as channel:
            try:
                return getattr(RouterStub(channel), method)(request, timeout=HTTP_TIMEOUT_S)
            except grpc.RpcError as exc:
                if not isinstance(exc, grpc.Call):
                    raise
                return refusal(exc.details() or "")

    def route(self, question: Question, top_k: int) -> Answer | Refusal:
        request = pb.RouteRequest()
        request.CopyFrom(question.message)
        request.top_k = top_k
        reply = self._call("Route", request)
        if isinstance(reply, Refusal):
            return reply
        return Answer(
            model=reply.model,
            candidates=tuple((c.model, c.score) for c in reply.candidates),
            eligible=reply.eligible_models,
            removed=_removed(dict(reply.removed_by_constraint)),
        )

    def rank_models(
        self, question: Question, *, author: str, limit: int, offset: int
    ) -> Ranked | Refusal:
        request = pb.ListModelsRequest(
            author=author, limit=limit, offset=offset, ranking=question.message
        )
        reply = self._call("ListModels", request)
        if isinstance(reply, Refusal):
            return reply
        return Ranked(
            models=tuple((m.rank, m.id, m.candidate.score) for m in reply.models),
            total=reply.total,
            eligible=reply.eligible_models,
            removed=_removed(dict(reply.removed_by_constraint)),
        )


class Rest:
    def __init__(self, url: str) -> None:
        self.url = url

    def _get(self, reply: httpx.Response) -> dict[str, Any] | Refusal:
        body: dict[str, Any] = reply.json()
        if reply.status_code != 200:
            return refusal(body["error"]["message"])
        return body

    def route(self, question: Question, top_k: int) -> Answer | Refusal:
        with httpx.Client(base_url=self.url, timeout=HTTP_TIMEOUT_S) as client:
            reply = self._get(client.post("/route", json={**question.body, "top_k": top_k}))
        return reply if isinstance(reply, Refusal) else answer_of(reply)

    def rank_models(
        self, question: Question, *, author: str, limit: int, offset: int
    ) -> Ranked | Refusal:
        query = {**models_query(question), "author": author, "limit": limit, "offset": offset}
        with httpx.Client(base_url=self.url, timeout=HTTP_TIMEOUT_S) as client:
            reply = self._get(client.get("/models", params=query))
        return reply if isinstance(reply, Refusal) else ranked_of(reply)


class Cli:
    """`router …` in this process (`target` None) or against the router at `target`."""

    def __init__(self, target: str | None) -> None:
        self.target = ["--target", target] if target else []

    def _run(self, *args: str) -> dict[str, Any] | Refusal:
        result = runner.invoke(app, [*args, *self.target, "--json"])
        if result.exit_code == 2:
            # "error: <message>", with the gRPC status before the message when remote
            return refusal(re.sub(r"^error: ([A-Z_]+: )?", "", " ".join(result.stderr.split())))
        assert result.exit_code == 0, result.output
        reply: dict[str, Any] = json.loads(result.stdout)
        return reply

    def route(self, question: Question, top_k: int) -> Answer | Refusal:
        reply = self._run("route", *question.cli, "--top-k", str(top_k))
        return reply if isinstance(reply, Refusal) else answer_of(reply)

    def rank_models(
        self, question: Question, *, author: str, limit: int, offset: int
    ) -> Ranked | Refusal:
        paging = ["--author", author, "--limit", str(limit), "--offset", str(offset)]
        reply = self._run("models", *question.cli, *paging)
        return reply if isinstance(reply, Refusal) else ranked_of(reply)


def _cli_in_process(request: pytest.FixtureRequest) -> Cli:
    """The command builds its router from the environment: give it the test server's
    settings, and a state directory of its own so that it serves the embedded catalogue."""
    settings: Settings = request.getfixturevalue("settings")
    monkeypatch: pytest.MonkeyPatch = request.getfixturevalue("monkeypatch")
    state_dir: Path = request.getfixturevalue("tmp_path")
    modes = {name: w.model_dump() for name, w in settings.custom_modes.items()}
    monkeypatch.setenv("ROUTER_CUSTOM_MODES", json.dumps(modes))
    monkeypatch.setenv("ROUTER_FREE_MODELS", json.dumps(settings.free_models))
    monkeypatch.setenv("ROUTER_DEFAULT_MODE", settings.default_mode)
    monkeypatch.setenv("ROUTER_STATE_DIR", str(state_dir))
    return Cli(None)


# Each adapter, from the fixtures that reach it; REST both ways, as the `gateway` fixture.
ADAPTERS: dict[str, Callable[[pytest.FixtureRequest], Adapter]] = {
    "grpc": lambda r: Grpc(r.getfixturevalue("grpc_address")),
    "rest in process": lambda r: Rest(r.getfixturevalue("router_server").http_url),
    "rest remote": lambda r: Rest(r.getfixturevalue("remote_gateway_url")),
    "cli": _cli_in_process,
    "cli --target": lambda r: Cli(r.getfixturevalue("grpc_address")),
}
