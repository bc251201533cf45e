"""`router route` and `router explore`: rank the catalogue for a request."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from cli.common import AsJson, Target, call, out, print_json, show
from cli.routing_options import UINT32_MAX, routing_options
from service.pb.router.v1 import router_pb2 as pb


def caption(response: pb.RouteResponse | pb.ExplainResponse | pb.ListModelsResponse) -> str:
    """What a ranking was made with, under its table."""
    w = response.weights
    return (
        f"weights latency {w.latency:.2f} cost {w.cost:.2f} quality {w.quality:.2f}; "
        f"{response.eligible_models} eligible; catalogue {response.catalogue_version}; "
        "* estimated"
    )


def bounds(n: pb.Normalisation) -> str:
    """The range each term was normalised over, as a line under a ranking."""
    return (
        f"normalised over latency {n.latency_min_seconds:.2f} to {n.latency_max_seconds:.2f} s "
        f"and cost ${n.cost_floor_usd:.6f} to ${n.cost_max_usd:.6f} "
        "(free models count as the cheapest paid one)"
    )


def ranking_table(title: str, under: str, columns: tuple[str, ...]) -> Table:
    table = Table(title=title, caption=under)
    for column in columns:
        if column == "model":  # an id is read whole: the other columns give way
            table.add_column(column, no_wrap=True)
        else:
            table.add_column(column, justify="right", overflow="fold")
    return table


def star(value: str, estimated: bool) -> str:
    return value + ("*" if estimated else "")


SCORE_COLUMNS = ("score", "latency", "cost", "quality", "exp. cost $", "exp. time s")


def score_cells(c: pb.Candidate) -> tuple[str, ...]:
    """A candidate's score, its terms and what it expects, under `SCORE_COLUMNS`."""
    return (
        f"{c.score:.3f}",
        f"{c.terms.latency:.3f}",
        f"{c.terms.cost:.3f}",
        star(f"{c.terms.quality:.3f}", c.quality_estimated),
        f"{c.expected_cost_usd:.6f}",
        star(f"{c.expected_latency_seconds:.2f}", c.latency_estimated),
    )


def _ranked(request: pb.RouteRequest, target: str | None, as_json: bool) -> pb.RouteResponse | None:
    """The router's answer, or None once it has been printed as JSON."""
    response: pb.RouteResponse = call(target, "Route", request)
    if as_json:
        print_json(response)
        return None
    return response


@routing_options
def route(
    *,
    top_k: Annotated[
        int, typer.Option(min=0, max=UINT32_MAX, help="Candidates to show; 0: default.")
    ] = 0,
    routing: pb.RouteRequest,
    target: Target = None,
    as_json: AsJson = False,
) -> None:
    """Pick the best model for a request and show the ranked candidates with their scores."""
    routing.top_k = top_k
    response = _ranked(routing, target, as_json)
    if response is None:
        return
    columns = ("model", *SCORE_COLUMNS)
    table = ranking_table(f"best: {response.model}", caption(response), columns)
    for c in response.candidates:
        table.add_row(c.model, *score_cells(c))
    show(table)
    out.print(bounds(response.normalisation), highlight=False, soft_wrap=True)


@routing_options
def explore(
    *,
    top_k: Annotated[int, typer.Option(min=1, max=UINT32_MAX, help="Models to show.")] = 15,
    routing: pb.RouteRequest,
    target: Target = None,
    as_json: AsJson = False,
) -> None:
    """Rank the catalogue for a mode and show what each model brings (quality, speed, price),
    where each figure comes from, and the bounds the terms were normalised over."""
    routing.top_k = top_k
    response = _ranked(routing, target, as_json)
    if response is None:
        return
    listing: pb.ListModelsResponse = call(target, "ListModels", pb.ListModelsRequest())
    models = {m.id: m for m in listing.models}
    columns = (
        "model",
        "score",
        "exp. time s",
        "ttft s",
        "tok/s",
        "latency from",
        "exp. cost $",
        "$/M in",
        "$/M out",
        "quality",
        "quality from",
        "context",
    )
    table = ranking_table(f"top {len(response.candidates)}", caption(response), columns)
    for c in response.candidates:
        m = models.get(c.model, pb.ModelInfo(id=c.model))
        table.add_row(
            c.model,
            f"{c.score:.3f}",
            star(f"{c.expected_latency_seconds:.2f}", c.latency_estimated),
            star(f"{c.ttft_seconds:.2f}", c.latency_estimated),
            star(f"{c.tokens_per_second:.0f}", c.latency_estimated),
            c.latency_source,
            f"{c.expected_cost_usd:.6f}",
            f"{m.prompt_price_per_mtok:.3f}",
            f"{m.completion_price_per_mtok:.3f}",
            star(f"{c.terms.quality:.3f}", c.quality_estimated),
            c.quality_source,
            f"{m.context_length:,}",
        )
    show(table)
    out.print(bounds(response.normalisation), highlight=False, soft_wrap=True)
