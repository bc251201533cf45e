"""`router models` and `router catalogue …`: what the router knows of the models."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import json
from typing import Annotated

import typer
from rich.table import Table

from cli.common import (
    RPC_TIMEOUT_S,
    AsJson,
    Target,
    Typer,
    call,
    fail,
    out,
    print_json,
    progress,
    show,
)
from cli.routing import SCORE_COLUMNS, bounds, caption, ranking_table, score_cells
from cli.routing_options import UINT32_MAX, routing_options
from service.catalogue_diff import Change, diff, listed_now
from service.catalogue_keeper import Eligibility
from service.config import Settings
from service.openrouter import OpenRouterError
from service.pb.router.v1 import router_pb2 as pb

catalogue_app = Typer(help="Show or refresh the catalogue the router serves.")


@routing_options
def models(
    *,
    query: Annotated[str, typer.Option(help="Substring of the id or name.")] = "",
    author: Annotated[str, typer.Option(help="Exact author, e.g. openai.")] = "",
    limit: Annotated[
        int, typer.Option(min=0, max=UINT32_MAX, help="At most this many; 0: all.")
    ] = 20,
    offset: Annotated[int, typer.Option(min=0, max=UINT32_MAX, help="Skip this many.")] = 0,
    routing: pb.RouteRequest,
    target: Target = None,
    as_json: AsJson = False,
) -> None:
    """List the catalogue the router ranks. With a mode, weights, a profile or constraints,
    rank it for that request: the models it may use, best first, with their scores."""
    request = pb.ListModelsRequest(query=query, author=author, limit=limit, offset=offset)
    if routing != pb.RouteRequest():
        request.ranking.CopyFrom(routing)
    response: pb.ListModelsResponse = call(target, "ListModels", request)
    if as_json:
        print_json(response)
    elif request.HasField("ranking"):
        _print_ranked(response)
    else:
        _print_listed(response)


def _print_listed(response: pb.ListModelsResponse) -> None:
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
    show(table)


def _print_ranked(response: pb.ListModelsResponse) -> None:
    columns = ("rank", "model", *SCORE_COLUMNS, "$/M in", "$/M out")
    title = f"{len(response.models)} of {response.total} eligible models, ranked"
    table = ranking_table(title, caption(response), columns)
    for m in response.models:
        table.add_row(
            str(m.rank),
            m.id,
            *score_cells(m.candidate),
            f"{m.prompt_price_per_mtok:.3f}",
            f"{m.completion_price_per_mtok:.3f}",
        )
    show(table)
    out.print(bounds(response.normalisation), highlight=False, soft_wrap=True)


def _when(unix: float) -> str:
    if not unix:
        return "never"
    return dt.datetime.fromtimestamp(unix, dt.UTC).isoformat(timespec="seconds")


def _ratio(name: str, value: float | None, models: int) -> str:
    if value is None:
        return f"{name} not calibrated ({models} models with both figures)"
    return f"{name} times {value:.3g} (median over {models} models)"


def _calibration(c: pb.LatencyCalibration) -> str:
    ttft = c.ttft_ratio if c.HasField("ttft_ratio") else None
    throughput = c.throughput_ratio if c.HasField("throughput_ratio") else None
    return (
        f"{_ratio('time to first token', ttft, c.ttft_models)}, "
        f"{_ratio('throughput', throughput, c.throughput_models)} on OpenRouter's endpoint scale"
    )


def _print_status(status: pb.CatalogueStatus) -> None:
    out.print(f"catalogue {status.version}: {status.models} models ({status.source})")
    eligibility = status.eligibility
    routable = Eligibility(
        eligibility.models, eligibility.routable, dict(eligibility.excluded_by_rule)
    )
    out.print(f"default routes: {routable}", highlight=False)
    out.print(f"latency priors: {_calibration(status.latency_calibration)}", highlight=False)
    out.print(
        f"last refresh attempt {_when(status.last_refresh_attempt)}, "
        f"last success {_when(status.last_refresh_success)}"
    )
    if status.last_refresh_error:
        out.print(
            f"[yellow]last refresh failed[/yellow] ({status.consecutive_refresh_failures} in a "
            f"row{', catalogue stale' if status.stale else ''}): {status.last_refresh_error}",
            highlight=False,
        )


@catalogue_app.command()
def status(target: Target = None, as_json: AsJson = False) -> None:
    """The catalogue being served and how its refreshes go."""
    reply = call(target, "GetStatus", pb.GetStatusRequest())
    if as_json:
        print_json(reply)
        return
    _print_status(reply.catalogue)


@catalogue_app.command()
def refresh(target: Target = None, as_json: AsJson = False) -> None:
    """Fetch OpenRouter's catalogue now (in a running router with --target, else here, saving
    it for the next start). A failed or implausible listing keeps the current catalogue."""
    where = f"the router at {target}" if target else "this process"
    timeout_s = RPC_TIMEOUT_S if target else Settings().openrouter_timeout_s
    with progress(f"refreshing the catalogue in {where} (gives up after {timeout_s:g} s)"):
        reply = call(target, "RefreshCatalogue", pb.RefreshCatalogueRequest())
    if as_json:
        print_json(reply)
    else:
        verdict = "replaced" if reply.replaced else "kept"
        out.print(f"{verdict} catalogue {reply.previous_version}")
        _print_status(reply.catalogue)
    if reply.catalogue.last_refresh_error:
        raise typer.Exit(code=1)


@catalogue_app.command(name="diff")
def diff_command(target: Target = None, as_json: AsJson = False) -> None:
    """What a refresh would change now: OpenRouter's listing, fetched here, against the
    catalogue the router at --target serves (without it, the one a router here would serve)."""
    served = call(target, "ListModels", pb.ListModelsRequest()).models
    settings = Settings()
    fetching = (
        f"fetching the catalogue from {settings.openrouter_base_url} "
        f"(gives up after {settings.openrouter_timeout_s:g} s)"
    )
    with progress(fetching):
        try:
            fresh = asyncio.run(listed_now(settings))
        except OpenRouterError as exc:
            raise fail(f"could not fetch OpenRouter's catalogue: {exc}") from None
    changes = diff(served, fresh)
    if as_json:
        out.print_json(json.dumps([dataclasses.asdict(c) for c in changes]))
        return
    show(_changes_table(changes, len(served), len(fresh)))


def _changes_table(changes: list[Change], served: int, fresh: int) -> Table:
    kinds = {kind: {c.model for c in changes if c.kind == kind} for kind in ("added", "removed")}
    changed = len({c.model for c in changes if c.kind == "changed"})
    table = Table(
        title=(
            f"a refresh would add {len(kinds['added'])}, remove {len(kinds['removed'])} and "
            f"change {changed} models ({served} served, {fresh} listed)"
        ),
        caption="prices in USD per million tokens",
    )
    for column in ("change", "model", "field", "before", "after"):
        table.add_column(column, overflow="fold")
    for c in changes:
        table.add_row(c.kind, c.model, c.field, c.before, c.after)
    return table
