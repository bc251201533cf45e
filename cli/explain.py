"""`router explain`: why a model ranks where it does for a request, against the winner; or,
given a decision id, what a router decided then and how that decision reads now."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated

import typer
from google.protobuf.json_format import MessageToDict
from rich.table import Table

from cli.common import AsJson, Target, call, fail, out, print_json, show
from cli.routing import SCORE_COLUMNS, bounds, caption, ranking_table, score_cells
from cli.routing_options import routing_options
from service.decision_records import DECISION_ID
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
            metavar="MODEL|DECISION_ID",
            help="The model to explain (omit it to explain the winner alone), or the id of a "
            "decision the router at --target made.",
        ),
    ] = "",
    *,
    routing: pb.RouteRequest,
    target: Target = None,
    as_json: AsJson = False,
) -> None:
    """Show why MODEL ranks where it does for a request: term by term against the winner,
    with the figures behind each term and where they come from. Given a DECISION_ID instead,
    show what was decided (candidates, scores, attempts) and explain that request's winner
    (or the model that answered) as the router ranks it now."""
    if DECISION_ID.fullmatch(model):
        _explain_decision(model, target, as_json)
        return
    response: pb.ExplainResponse = call(
        target, "Explain", pb.ExplainRequest(routing=routing, model=model)
    )
    if as_json:
        print_json(response)
    else:
        _show(response)


def _explain_decision(decision_id: str, target: str | None, as_json: bool) -> None:
    if target is None:
        raise fail("a decision id is looked up on a running router: pass --target")
    record: pb.DecisionRecord = call(
        target, "GetDecision", pb.GetDecisionRequest(decision_id=decision_id)
    )
    # The profile the decision was made with (a completion's derives from its messages).
    routing = pb.RouteRequest()
    routing.CopyFrom(record.request)
    routing.profile.CopyFrom(record.response.profile)
    subject = record.answered_by or record.response.model
    now: pb.ExplainResponse = call(
        target, "Explain", pb.ExplainRequest(routing=routing, model=subject)
    )
    if as_json:
        both = {"record": _as_dict(record), "explanation_now": _as_dict(now)}
        out.print_json(json.dumps(both))
        return
    _show_record(record)
    out.print(f"as the router ranks {subject} for that request now:", highlight=False)
    _show(now)


def _as_dict(message: pb.DecisionRecord | pb.ExplainResponse) -> dict[str, object]:
    return MessageToDict(
        message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )


def _show_record(record: pb.DecisionRecord) -> None:
    decision = record.response
    when = datetime.fromtimestamp(record.decided_at, UTC).isoformat(timespec="seconds")
    kind = "completion" if record.completion else "route"
    title = f"decision {decision.decision_id} ({kind}, {when}): {decision.model}"
    table = ranking_table(title, caption(decision), ("model", *SCORE_COLUMNS))
    for c in decision.candidates:
        table.add_row(c.model, *score_cells(c))
    show(table)
    for a in record.attempts:
        error = f": {a.error}" if a.error else ""
        out.print(f"attempt {a.model}: {a.outcome}{error}", highlight=False, soft_wrap=True)
    if record.completion and record.attempts:
        out.print(f"answered by: {record.answered_by or 'none'}", highlight=False)


def _show(response: pb.ExplainResponse) -> None:
    shown = [response.subject]
    if response.subject.model != response.winner.model:
        shown.append(response.winner)
    table = Table(title=f"best: {response.winner.model}", caption=caption(response))
    table.add_column("")
    for m in shown:
        table.add_column(m.model, justify="right", overflow="fold")
    for label, row in _rows(response):
        table.add_row(label, *(row(m) for m in shown))
    show(table)
    out.print(bounds(response.normalisation), highlight=False, soft_wrap=True)
    for line in response.summary:
        out.print(line, highlight=False, soft_wrap=True)
