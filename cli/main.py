"""`router`: serve the router, rank the catalogue, list models."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Annotated, Any

import grpc
import typer
from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message
from rich.console import Console
from rich.table import Table

from cli import serve as serve_cmd
from service.catalogue_keeper import initial_catalogue
from service.config import NAMED_MODES, Settings
from service.pb.router.v1 import router_pb2 as pb
from service.pb.router.v1.router_pb2_grpc import RouterStub
from service.router import ModelRouter
from service.scorer import ScorerError

app = typer.Typer(help="Low-latency model router for OpenRouter.", no_args_is_help=True)
out = Console()
err = Console(stderr=True)

MODES = {
    "speed": pb.MODE_SPEED,
    "cost": pb.MODE_COST,
    "quality": pb.MODE_QUALITY,
    "balanced": pb.MODE_BALANCED,
}

Target = Annotated[
    str | None,
    typer.Option(help="gRPC address of a running router; default: rank in this process."),
]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


def _fail(message: str) -> typer.Exit:
    err.print(f"[red]error:[/red] {message}", highlight=False)
    return typer.Exit(code=2)


def _call(target: str | None, method: str, request: Message) -> Any:
    """Call `method` on the router at `target`, or on an in-process router without one."""
    try:
        if target is None:
            settings = Settings()
            router = ModelRouter(initial_catalogue(settings)[0], settings)
            return getattr(router, {"Route": "route", "ListModels": "list_models"}[method])(request)
        with grpc.insecure_channel(target) as channel:
            return getattr(RouterStub(channel), method)(request, timeout=10)
    except ScorerError as exc:
        raise _fail(str(exc)) from None
    except grpc.RpcError as exc:
        raise _fail(f"{exc.code().name}: {exc.details()}") from None


def _print_json(message: Message) -> None:
    out.print_json(json.dumps(MessageToDict(message, preserving_proto_field_name=True)))


def _parse_weights(text: str) -> pb.Weights:
    try:
        latency, cost, quality = (float(x) for x in text.split(","))
    except ValueError:
        raise _fail(f"--weights takes latency,cost,quality (three numbers), got {text!r}") from None
    return pb.Weights(latency=latency, cost=cost, quality=quality)


@app.command()
def serve(
    grpc_port: Annotated[int | None, typer.Option(help="gRPC port (default 50051).")] = None,
    http_port: Annotated[int | None, typer.Option(help="REST gateway port (default 8000).")] = None,
    host: Annotated[str | None, typer.Option(help="Address to bind both servers to.")] = None,
) -> None:
    """Serve the gRPC API and the REST gateway until interrupted."""
    overrides: dict[str, Any] = {}
    if grpc_port is not None:
        overrides["grpc_port"] = grpc_port
    if http_port is not None:
        overrides["http_port"] = http_port
    if host is not None:
        overrides["grpc_host"] = overrides["http_host"] = host
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    asyncio.run(serve_cmd.run(Settings(**overrides)))


@app.command()
def route(
    mode: Annotated[str | None, typer.Option(help=f"One of {', '.join(NAMED_MODES)}.")] = None,
    custom_mode: Annotated[str | None, typer.Option(help="A named mode from the config.")] = None,
    weights: Annotated[
        str | None, typer.Option(help="Explicit weights latency,cost,quality, e.g. 0.5,0.3,0.2.")
    ] = None,
    top_k: Annotated[int, typer.Option(min=0, help="Candidates to show; 0: default.")] = 0,
    prompt_tokens: Annotated[int, typer.Option(min=0, help="Expected prompt tokens.")] = 0,
    output_tokens: Annotated[int, typer.Option(min=0, help="Expected output tokens.")] = 0,
    target: Target = None,
    as_json: AsJson = False,
) -> None:
    """Pick the best model for a request and show the ranked candidates."""
    if sum(x is not None for x in (mode, custom_mode, weights)) > 1:
        raise _fail("give at most one of --mode, --custom-mode, --weights")
    request = pb.RouteRequest(
        top_k=top_k,
        profile=pb.RequestProfile(prompt_tokens=prompt_tokens, output_tokens=output_tokens),
    )
    if mode is not None:
        if mode not in MODES:
            raise _fail(f"unknown mode {mode!r}; expected one of {', '.join(MODES)}")
        request.mode = MODES[mode]
    elif custom_mode is not None:
        request.custom_mode = custom_mode
    elif weights is not None:
        request.weights.CopyFrom(_parse_weights(weights))
    response: pb.RouteResponse = _call(target, "Route", request)
    if as_json:
        _print_json(response)
        return
    w = response.weights
    table = Table(
        title=f"best: {response.model}",
        caption=(
            f"weights latency {w.latency:.2f} cost {w.cost:.2f} quality {w.quality:.2f}; "
            f"{response.eligible_models} eligible; catalogue {response.catalogue_version}"
        ),
    )
    for column in ("model", "score", "latency", "cost", "quality", "exp. cost $", "exp. time s"):
        table.add_column(column, justify="left" if column == "model" else "right", overflow="fold")
    for c in response.candidates:
        table.add_row(
            c.model,
            f"{c.score:.3f}",
            f"{c.terms.latency:.3f}",
            f"{c.terms.cost:.3f}",
            f"{c.terms.quality:.3f}" + ("*" if c.quality_estimated else ""),
            f"{c.expected_cost_usd:.6f}",
            f"{c.expected_latency_seconds:.2f}" + ("*" if c.latency_estimated else ""),
        )
    out.print(table)


@app.command()
def models(
    query: Annotated[str, typer.Option(help="Substring of the id or name.")] = "",
    author: Annotated[str, typer.Option(help="Exact author, e.g. openai.")] = "",
    limit: Annotated[int, typer.Option(min=0, help="At most this many; 0: all.")] = 20,
    target: Target = None,
    as_json: AsJson = False,
) -> None:
    """List the catalogue the router ranks."""
    request = pb.ListModelsRequest(query=query, author=author, limit=limit)
    response: pb.ListModelsResponse = _call(target, "ListModels", request)
    if as_json:
        _print_json(response)
        return
    table = Table(
        title=f"{len(response.models)} of {response.total} models",
        caption=f"catalogue {response.catalogue_version}; * estimated",
    )
    for column in ("model", "context", "$/M in", "$/M out", "quality"):
        table.add_column(column, justify="left" if column == "model" else "right", overflow="fold")
    for m in response.models:
        table.add_row(
            m.id,
            f"{m.context_length:,}",
            f"{m.prompt_price_per_mtok:.3f}",
            f"{m.completion_price_per_mtok:.3f}",
            f"{m.quality:.3f}" + ("*" if m.quality_estimated else ""),
        )
    out.print(table)
