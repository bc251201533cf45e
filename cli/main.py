"""`router`: serve the router, rank the catalogue, explore it, explain a ranking, refresh it,
benchmark a router."""

from __future__ import annotations

import asyncio
import logging
from typing import Annotated, Any

import typer

from cli import benchmark, catalogue, complete, explain, routing
from cli import serve as serve_cmd
from cli.common import Typer, fail
from cli.workers import refusal, serve_workers
from service.config import Settings

app = Typer(help="Low-latency model router for OpenRouter.", no_args_is_help=True)
app.command()(routing.route)
app.command()(routing.explore)
app.command()(explain.explain)
app.command()(catalogue.models)
app.command()(complete.complete)
app.add_typer(catalogue.catalogue_app, name="catalogue")
app.command()(benchmark.benchmark)


@app.command()
def serve(
    grpc_port: Annotated[int | None, typer.Option(help="gRPC port (default 50051).")] = None,
    http_port: Annotated[int | None, typer.Option(help="REST gateway port (default 8000).")] = None,
    host: Annotated[str | None, typer.Option(help="Address to bind both servers to.")] = None,
    workers: Annotated[
        int,
        typer.Option(min=1, help="Server processes sharing the ports (2 or more: needs Redis)."),
    ] = 1,
) -> None:
    """Serve the gRPC API and the REST gateway until interrupted."""
    overrides: dict[str, Any] = {}
    if grpc_port is not None:
        overrides["grpc_port"] = grpc_port
    if http_port is not None:
        overrides["http_port"] = http_port
    if host is not None:
        overrides["grpc_host"] = overrides["http_host"] = host
    settings = Settings(**overrides)
    _log_to_stderr(settings)
    if workers == 1:
        asyncio.run(serve_cmd.run(settings))
        return
    refused = refusal(settings, workers)
    if refused is not None:
        raise fail(refused)
    raise typer.Exit(serve_workers(settings, workers, serve_cmd.run))


@app.command()
def gateway(
    target: Annotated[str, typer.Option(help="gRPC address of the router, HOST:PORT.")],
    http_port: Annotated[int | None, typer.Option(help="REST port (default 8000).")] = None,
    host: Annotated[str | None, typer.Option(help="Address to bind to.")] = None,
) -> None:
    """Serve the REST gateway alone, in front of a router running elsewhere."""
    overrides: dict[str, Any] = {}
    if http_port is not None:
        overrides["http_port"] = http_port
    if host is not None:
        overrides["http_host"] = host
    settings = Settings(**overrides)
    _log_to_stderr(settings)
    asyncio.run(serve_cmd.run_gateway(settings, target))


def _log_to_stderr(settings: Settings) -> None:
    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
