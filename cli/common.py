"""What the commands share: output, errors, and reaching a router (remote or in process)."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Annotated, Any, TypeVar

import grpc
import typer
from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message
from rich.console import Console, RenderableType
from rich.table import Table
from rich.text import Text
from typer.core import TyperCommand, TyperGroup

from service.config import Settings
from service.core import RouterCore
from service.errors import RouterError
from service.pb.router.v1 import router_pb2 as pb
from service.pb.router.v1.router_pb2_grpc import RouterStub
from service.runtime import Runtime

out = Console()
err = Console(stderr=True)

Target = Annotated[
    str | None,
    typer.Option(help="gRPC address of a running router; default: work in this process."),
]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


F = TypeVar("F", bound=Callable[..., Any])


def _flags_as_flags(params: list[Any]) -> list[Any]:
    """Flags (--help, --json, --install-completion...) shown without typer's `<bool>`."""
    for param in params:
        if getattr(param, "is_flag", False) and param.metavar is None:
            param.metavar = ""
    return params


class Command(TyperCommand):
    def get_params(self, ctx: Any) -> list[Any]:
        return _flags_as_flags(super().get_params(ctx))


class Group(TyperGroup):
    def get_params(self, ctx: Any) -> list[Any]:
        return _flags_as_flags(super().get_params(ctx))


class Typer(typer.Typer):
    """typer.Typer whose groups and commands show their flags as flags."""

    def __init__(self, **settings: Any) -> None:
        super().__init__(cls=Group, **settings)

    def command(self, name: str | None = None, **settings: Any) -> Callable[[F], F]:
        return super().command(name, cls=Command, **settings)


RPC_TIMEOUT_S = 30.0
COMPLETE_TIMEOUT_S = 120.0
CALLER_KEY_ENV = "ROUTER_API_KEY"


def caller_metadata() -> tuple[tuple[str, str], ...]:
    """The caller key a router with caller keys on wants (`ROUTER_API_KEY`), as gRPC metadata;
    nothing without one. Read from the environment, never a flag: a flag shows in `ps`."""
    key = os.environ.get(CALLER_KEY_ENV, "").strip()
    return (("authorization", f"Bearer {key}"),) if key else ()


def fail(message: str) -> typer.Exit:
    err.print(f"[red]error:[/red] {message}", highlight=False)
    return typer.Exit(code=2)


# Each RPC the commands use, as the router's core answers it in this process.
LOCAL: dict[str, Callable[[RouterCore, Any], Message | Awaitable[Message]]] = {
    "Route": RouterCore.route,
    "ListModels": RouterCore.list_models,
    "Explain": RouterCore.explain,
    "GetStatus": lambda core, _: core.status(),
    "Complete": lambda core, request: core.complete(request, None),
    "RefreshCatalogue": lambda core, _: core.refresh(),
}


@contextlib.asynccontextmanager
async def _core_here() -> AsyncIterator[RouterCore]:
    """A router built here on the catalogue a server started here would serve."""
    core = RouterCore(Runtime.build(Settings()))
    try:
        yield core
    finally:
        await core.aclose()


async def _here(method: str, request: Message) -> Message:
    """`method` of a router built here."""
    async with _core_here() as core:
        answer = LOCAL[method](core, request)
        return await answer if inspect.isawaitable(answer) else answer


@contextlib.contextmanager
def _reported(target: str | None) -> Iterator[None]:
    """The router's errors as a message and exit code 2, never a traceback."""
    try:
        yield
    except RouterError as exc:
        raise fail(exc.message) from None
    except grpc.RpcError as exc:
        if isinstance(exc, grpc.Call):
            raise fail(f"{exc.code().name}: {exc.details()}") from None
        raise fail(f"the router at {target} failed: {exc}") from None


def call(
    target: str | None, method: str, request: Message, timeout_s: float = RPC_TIMEOUT_S
) -> Any:
    """`method` of the router at `target`, or of a router in this process without one."""
    with _reported(target):
        if target is None:
            return asyncio.run(_here(method, request))
        with grpc.insecure_channel(target) as channel:
            method_of = getattr(RouterStub(channel), method)
            return method_of(request, timeout=timeout_s, metadata=caller_metadata())


OnChunk = Callable[[pb.CompleteChunk], None]


async def _stream_here(request: pb.CompleteRequest, each: OnChunk) -> None:
    async with _core_here() as core:
        async for chunk in core.stream(request, None):
            each(chunk)


def stream(target: str | None, request: pb.CompleteRequest, each: OnChunk) -> None:
    """`StreamComplete` of the router at `target` (or in this process), each chunk to `each`
    as it comes."""
    with _reported(target):
        if target is None:
            asyncio.run(_stream_here(request, each))
            return
        with grpc.insecure_channel(target) as channel:
            chunks = RouterStub(channel).StreamComplete(
                request, timeout=COMPLETE_TIMEOUT_S, metadata=caller_metadata()
            )
            for chunk in chunks:
                each(chunk)


def progress(message: str) -> contextlib.AbstractContextManager[object]:
    """A spinner with `message` on stderr while something slow runs, on a terminal only."""
    return err.status(message) if err.is_terminal else contextlib.nullcontext()


def show(table: Table) -> None:
    """The table drawn on a terminal; elsewhere (a pipe, a file) as tab-separated lines, a
    header then one row per line, never wrapped, with the title and caption as `# ` lines."""
    if out.is_terminal:
        out.print(table)
        return
    rows = [[_plain(column.header) for column in table.columns]]
    rows += [
        [_plain(cell) for cell in row]
        for row in zip(*(c.cells for c in table.columns), strict=True)
    ]
    lines = ["\t".join(row) for row in rows]
    if table.title:
        lines.insert(0, f"# {_plain(table.title)}")
    if table.caption:
        lines.append(f"# {_plain(table.caption)}")
    typer.echo("\n".join(lines))


def _plain(cell: RenderableType | Text | str) -> str:
    if isinstance(cell, str):
        return Text.from_markup(cell).plain
    return cell.plain if isinstance(cell, Text) else str(cell)


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
