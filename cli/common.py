"""What the commands share: output, errors, and reaching a router (remote or in process)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Annotated, Any

import grpc
import typer
from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message
from rich.console import Console

from service.catalogue_keeper import initial_catalogue
from service.config import Settings
from service.explain import explain
from service.pb.router.v1.router_pb2_grpc import RouterStub
from service.router import ModelRouter
from service.scorer import ScorerError

out = Console()
err = Console(stderr=True)

Target = Annotated[
    str | None,
    typer.Option(help="gRPC address of a running router; default: work in this process."),
]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]

RPC_TIMEOUT_S = 30.0


def fail(message: str) -> typer.Exit:
    err.print(f"[red]error:[/red] {message}", highlight=False)
    return typer.Exit(code=2)


def local_router() -> ModelRouter:
    """A router on the catalogue a server started here would serve."""
    settings = Settings()
    return ModelRouter(initial_catalogue(settings)[0], settings)


def call(target: str | None, method: str, request: Message) -> Any:
    """`method` of the router at `target`, or of an in-process router without one."""
    local: dict[str, Callable[[ModelRouter, Any], Message]] = {
        "Route": ModelRouter.route,
        "ListModels": ModelRouter.list_models,
        "Explain": explain,
    }
    try:
        if target is None:
            return local[method](local_router(), request)
        with grpc.insecure_channel(target) as channel:
            return getattr(RouterStub(channel), method)(request, timeout=RPC_TIMEOUT_S)
    except ScorerError as exc:
        raise fail(str(exc)) from None
    except grpc.RpcError as exc:
        if isinstance(exc, grpc.Call):
            raise fail(f"{exc.code().name}: {exc.details()}") from None
        raise fail(f"the router at {target} failed: {exc}") from None


def print_json(message: Message) -> None:
    """The message as the REST gateway would answer it: proto field names, every field."""
    out.print_json(
        json.dumps(
            MessageToDict(
                message,
                preserving_proto_field_name=True,
                always_print_fields_with_no_presence=True,
            )
        )
    )
