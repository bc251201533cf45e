"""`router complete`: ask the router for a completion, streamed to the terminal as it comes."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from cli.common import COMPLETE_TIMEOUT_S, AsJson, Target, call, err, fail, print_json, stream
from cli.routing_options import routing_options
from service.pb.router.v1 import router_pb2 as pb


@routing_options
def complete(
    prompt: Annotated[str, typer.Argument(help="The user's message; - reads it from stdin.")],
    *,
    system: Annotated[str, typer.Option(help="A system message before it.")] = "",
    model: Annotated[
        list[str] | None,
        typer.Option(help="Call this model instead of ranking; repeat for fallbacks, in order."),
    ] = None,
    max_tokens: Annotated[
        int | None, typer.Option(min=1, help="Longest answer, in tokens.")
    ] = None,
    temperature: Annotated[float | None, typer.Option(min=0, max=2)] = None,
    routing: pb.RouteRequest,
    target: Target = None,
    as_json: AsJson = False,
) -> None:
    """Route the message to the best model (failing over as needed) and print its answer as
    it is written; who answered, the tokens and the cost go to stderr. --json waits for the
    whole answer and prints it with its attempts."""
    text = sys.stdin.read() if prompt == "-" else prompt
    if not text.strip():
        raise fail("the message is empty")
    messages = [pb.ChatMessage(role="system", content=system)] if system else []
    messages.append(pb.ChatMessage(role="user", content=text))
    request = pb.CompleteRequest(
        routing=routing,
        messages=messages,
        models=model or [],
        params=pb.GenerationParams(max_tokens=max_tokens, temperature=temperature),
    )
    if as_json:
        print_json(call(target, "Complete", request, COMPLETE_TIMEOUT_S))
        return
    stream(target, request, _print_chunk)


def _print_chunk(chunk: pb.CompleteChunk) -> None:
    if chunk.HasField("delta"):
        sys.stdout.write(chunk.delta)
        sys.stdout.flush()
        return
    summary = chunk.summary
    usage = summary.usage
    tries = len(summary.attempts)
    how = "from the response cache" if summary.cached else f"{tries} attempt{'s' * (tries != 1)}"
    sys.stdout.write("\n")
    err.print(
        f"{summary.model} via {summary.provider or 'the cache'}: {usage.prompt_tokens} + "
        f"{usage.completion_tokens} tokens, ${usage.cost_usd:.6f}, {how}; "
        f"decision {summary.decision_id}",
        highlight=False,
        soft_wrap=True,
    )
