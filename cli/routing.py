"""`router route` and `router explore`: rank the catalogue for a request."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from cli.common import AsJson, Target, call, fail, out, print_json
from service.config import NAMED_MODES
from service.pb.router.v1 import router_pb2 as pb

MODES = {
    "speed": pb.MODE_SPEED,
    "cost": pb.MODE_COST,
    "quality": pb.MODE_QUALITY,
    "balanced": pb.MODE_BALANCED,
}

Mode = Annotated[str | None, typer.Option(help=f"One of {', '.join(NAMED_MODES)}.")]
CustomMode = Annotated[str | None, typer.Option(help="A named mode from the config.")]
WeightsOption = Annotated[
    str | None, typer.Option(help="Explicit weights latency,cost,quality, e.g. 0.5,0.3,0.2.")
]
UINT32_MAX = 2**32 - 1
PromptTokens = Annotated[
    int, typer.Option(min=0, max=UINT32_MAX, help="Expected prompt tokens; 0: default.")
]
OutputTokens = Annotated[
    int, typer.Option(min=0, max=UINT32_MAX, help="Expected output tokens; 0: default.")
]


def route_request(
    mode: str | None,
    custom_mode: str | None,
    weights: str | None,
    top_k: int,
    prompt_tokens: int,
    output_tokens: int,
) -> pb.RouteRequest:
    if sum(x is not None for x in (mode, custom_mode, weights)) > 1:
        raise fail("give at most one of --mode, --custom-mode, --weights")
    request = pb.RouteRequest(
        top_k=top_k,
        profile=pb.RequestProfile(prompt_tokens=prompt_tokens, output_tokens=output_tokens),
    )
    if mode is not None:
        if mode not in MODES:
            raise fail(f"unknown mode {mode!r}; expected one of {', '.join(MODES)}")
        request.mode = MODES[mode]
    elif custom_mode is not None:
        request.custom_mode = custom_mode
    elif weights is not None:
        try:
            latency, cost, quality = (float(x) for x in weights.split(","))
        except ValueError:
            raise fail(
                f"--weights takes latency,cost,quality (three numbers), got {weights!r}"
            ) from None
        request.weights.CopyFrom(pb.Weights(latency=latency, cost=cost, quality=quality))
    return request


def caption(response: pb.RouteResponse | pb.ExplainResponse) -> str:
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


def _table(title: str, under: str, columns: tuple[str, ...]) -> Table:
    table = Table(title=title, caption=under)
    for column in columns:
        if column == "model":  # an id is read whole: the other columns give way
            table.add_column(column, no_wrap=True)
        else:
            table.add_column(column, justify="right", overflow="fold")
    return table


def _star(value: str, estimated: bool) -> str:
    return value + ("*" if estimated else "")


def _ranked(request: pb.RouteRequest, target: str | None, as_json: bool) -> pb.RouteResponse | None:
    """The router's answer, or None once it has been printed as JSON."""
    response: pb.RouteResponse = call(target, "Route", request)
    if as_json:
        print_json(response)
        return None
    return response


def route(
    mode: Mode = None,
    custom_mode: CustomMode = None,
    weights: WeightsOption = None,
    top_k: Annotated[
        int, typer.Option(min=0, max=UINT32_MAX, help="Candidates to show; 0: default.")
    ] = 0,
    prompt_tokens: PromptTokens = 0,
    output_tokens: OutputTokens = 0,
    target: Target = None,
    as_json: AsJson = False,
) -> None:
    """Pick the best model for a request and show the ranked candidates with their scores."""
    request = route_request(mode, custom_mode, weights, top_k, prompt_tokens, output_tokens)
    response = _ranked(request, target, as_json)
    if response is None:
        return
    columns = ("model", "score", "latency", "cost", "quality", "exp. cost $", "exp. time s")
    table = _table(f"best: {response.model}", caption(response), columns)
    for c in response.candidates:
        table.add_row(
            c.model,
            f"{c.score:.3f}",
            f"{c.terms.latency:.3f}",
            f"{c.terms.cost:.3f}",
            _star(f"{c.terms.quality:.3f}", c.quality_estimated),
            f"{c.expected_cost_usd:.6f}",
            _star(f"{c.expected_latency_seconds:.2f}", c.latency_estimated),
        )
    out.print(table)
    out.print(bounds(response.normalisation), highlight=False, soft_wrap=True)


def explore(
    mode: Mode = None,
    custom_mode: CustomMode = None,
    weights: WeightsOption = None,
    top_k: Annotated[int, typer.Option(min=1, max=UINT32_MAX, help="Models to show.")] = 15,
    prompt_tokens: PromptTokens = 0,
    output_tokens: OutputTokens = 0,
    target: Target = None,
    as_json: AsJson = False,
) -> None:
    """Rank the catalogue for a mode and show what each model brings (quality, speed, price),
    where each figure comes from, and the bounds the terms were normalised over."""
    request = route_request(mode, custom_mode, weights, top_k, prompt_tokens, output_tokens)
    response = _ranked(request, target, as_json)
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
    table = _table(f"top {len(response.candidates)}", caption(response), columns)
    for c in response.candidates:
        m = models.get(c.model, pb.ModelInfo(id=c.model))
        table.add_row(
            c.model,
            f"{c.score:.3f}",
            _star(f"{c.expected_latency_seconds:.2f}", c.latency_estimated),
            _star(f"{c.ttft_seconds:.2f}", c.latency_estimated),
            _star(f"{c.tokens_per_second:.0f}", c.latency_estimated),
            c.latency_source,
            f"{c.expected_cost_usd:.6f}",
            f"{m.prompt_price_per_mtok:.3f}",
            f"{m.completion_price_per_mtok:.3f}",
            _star(f"{c.terms.quality:.3f}", c.quality_estimated),
            c.quality_source,
            f"{m.context_length:,}",
        )
    out.print(table)
    out.print(bounds(response.normalisation), highlight=False, soft_wrap=True)
