"""`router explain`: why a model ranks where it does for a request, against the winner."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

import typer
from rich.table import Table

from cli.common import AsJson, Target, call, out, print_json
from cli.routing import bounds, caption
from cli.routing_options import routing_options
from service.pb.router.v1 import router_pb2 as pb

Row = Callable[[pb.ModelExplanation], str]


def _figure(figure: pb.Figure, digits: str) -> str:
    star = "*" if figure.estimated else ""
    return f"{figure.value:{digits}}{star} ({figure.source or 'unknown'})"


def _price(per_mtok: float) -> str:
    return "per request" if per_mtok < 0 else f"{per_mtok:.3f}"


def _term(name: str, weight: float) -> Row:
    def row(m: pb.ModelExplanation) -> str:
        term, contribution = getattr(m.terms, name), getattr(m.contributions, name)
        return f"{term:.3f} \N{MULTIPLICATION SIGN} {weight:.2f} = {contribution:.3f}"

    return row


def _scored(row: Row) -> Row:
    """A row of figures the scorer computes: none for a model a constraint removed."""
    return lambda m: row(m) if m.rank else "-"


def _rows(response: pb.ExplainResponse) -> list[tuple[str, Row]]:
    w = response.weights
    excluded = f"excluded ({response.excluded_by})"
    return [
        ("rank", lambda m: str(m.rank) if m.rank else excluded),
        ("score", _scored(lambda m: f"{m.score:.3f}")),
        ("latency term", _scored(_term("latency", w.latency))),
        ("cost term", _scored(_term("cost", w.cost))),
        ("quality term", _scored(_term("quality", w.quality))),
        ("expected time s", _scored(lambda m: f"{m.expected_latency_seconds:.2f}")),
        ("  ttft s", lambda m: _figure(m.ttft_seconds, ".2f")),
        ("  tokens/s", lambda m: _figure(m.tokens_per_second, ".0f")),
        ("expected cost $", _scored(lambda m: f"{m.expected_cost_usd:.6f}")),
        ("  $/M in", lambda m: _price(m.prompt_price_per_mtok)),
        ("  $/M out", lambda m: _price(m.completion_price_per_mtok) + (" free" if m.free else "")),
        ("quality", lambda m: _figure(m.quality, ".3f")),
    ]


@routing_options
def explain(
    model: Annotated[
        str,
        typer.Argument(
            metavar="MODEL", help="The model to explain; omit it to explain the winner alone."
        ),
    ] = "",
    *,
    routing: pb.RouteRequest,
    target: Target = None,
    as_json: AsJson = False,
) -> None:
    """Show why MODEL ranks where it does for a request: term by term against the winner,
    with the figures behind each term and where they come from."""
    request = pb.ExplainRequest(routing=routing, model=model)
    response: pb.ExplainResponse = call(target, "Explain", request)
    if as_json:
        print_json(response)
        return
    shown = [response.subject]
    if response.subject.model != response.winner.model:
        shown.append(response.winner)
    table = Table(title=f"best: {response.winner.model}", caption=caption(response))
    table.add_column("")
    for m in shown:
        table.add_column(m.model, justify="right", overflow="fold")
    for label, row in _rows(response):
        table.add_row(label, *(row(m) for m in shown))
    out.print(table)
    out.print(bounds(response.normalisation), highlight=False, soft_wrap=True)
    for line in response.summary:
        out.print(line, highlight=False, soft_wrap=True)
