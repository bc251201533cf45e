"""The native scorer against the plain-Python reference, on thousands of random catalogues.

Each example draws small palettes of prices, latencies, qualities and context windows and builds
up to 60 models from them, so ties, free models, dynamically priced models, degenerate ranges and
values one ulp apart are common; ids share a handful of authors so `author/*` patterns and
provider lists hit. Live stats are applied in batches, and several requests are ranked.

Both scorers must agree on the ranking (ids and order), on how many models were eligible and why
the others were removed, and on every figure to within 1e-9; they must refuse the same requests.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, currently_in_test_context, event, given, settings
from hypothesis import strategies as st

from service import scorer as native
from service.scorer import (
    MODE_WEIGHTS,
    Constraints,
    InvalidRequest,
    LiveStats,
    ModelSpec,
    NoEligibleModel,
    Ranking,
    Scorer,
)
from testkit import reference_scorer as ref

T = TypeVar("T")
Model = dict[str, object]
Stats = dict[str, object]
Request = dict[str, Any]

TOLERANCE = 1e-9
AUTHORS = ("a", "ab", "b", "openai", "x-y")
NAME_CHARS = "mabx0-.:/"
PARAMETERS = ("tools", "seed", "temperature", "top_p", "response_format")
MODALITIES = ("text", "image", "file", "audio", "video")
OUTPUTS = (["text"],) * 7 + (["image", "text"], ["audio"], ["embeddings"], ["text", "speech"])
KINDS = ("chat",) * 8 + ("meta_router", "guard")
UNKNOWN_ID = "zz/unknown"  # no generated model has the author "zz"
ABSENT = object()


def around(*values: float) -> list[float]:
    """Each value and its two neighbouring floats, for near-ties and off-by-one-ulp boundaries."""
    out: list[float] = []
    for v in values:
        out += [v, math.nextafter(v, math.inf), math.nextafter(v, -math.inf)]
    return out


class Picker:
    """Many choices from one drawn 384-bit number: a Hypothesis draw costs far more than a choice.

    The number shrinks towards zero, which picks option 0 everywhere: make that the plain case.
    """

    def __init__(self, seed: bytes) -> None:
        self.seed = int.from_bytes(seed, "little")

    def pick(self, options: Sequence[T]) -> T:
        self.seed, i = divmod(self.seed, len(options))
        return options[i]

    def one_in(self, n: int) -> bool:
        return self.pick(range(n)) == 1

    def subset(self, options: Sequence[T], most: int) -> list[T]:
        return [self.pick(options) for _ in range(self.pick(range(most + 1)))]


pickers = st.binary(min_size=48, max_size=48).map(Picker)


# --- palettes: a few values per example that many models then share ------------------------------

PRICES = [1e-6, 0.0, 1e-7, 2e-6, 1.5e-5, 6e-5, *around(3e-6)]
QUALITIES = [0.5, 0.0, -0.0, 1.0, 0.3, math.nextafter(0.5, 1), math.nextafter(1, 0)]
TTFTS = [0.5, 0.0, 0.1, 0.2, 0.3, 1.0, 2.0, *around(0.25)]
THROUGHPUTS = [100.0, 1.0, 3.0, 7.0, 10.0, 30.0, *around(250.0)]
CONTEXTS = [128_000, 0, 1, 1000, 4096, 8192, 1_000_000, 200_000, 128_000, 1_000_000]
LIMIT_VALUES = [1.0, 0.0, 0.1, 2.0, 15.0]
WEIGHTS = [1.0, 0.0, -0.0, 0.1, 0.2, 0.5, 0.7, 2.0, 1 / 3, 1e-13]

# One arbitrary value of each kind per example, beside the constants above.
arbitrary_figures = st.tuples(
    st.floats(min_value=0.0, max_value=1e-4),  # price per token
    st.floats(min_value=0.0, max_value=1.0),  # quality
    st.floats(min_value=0.0, max_value=30.0),  # ttft
    st.floats(min_value=0.5, max_value=2000.0),  # throughput
    st.integers(min_value=0, max_value=2_000_000),  # context
    st.floats(min_value=0.0, max_value=100.0),  # limit
    st.floats(min_value=0.0, max_value=10.0),  # weight
)
token_counts = st.one_of(
    st.sampled_from([1000, 0, 1, 7, 4096, 100_000]), st.integers(min_value=0, max_value=20_000)
)
names = st.text(alphabet=NAME_CHARS, min_size=1, max_size=3)


class Palettes:
    """The values one example's models, stats and requests are built from."""

    def __init__(self, arbitrary: tuple[Any, ...], pick: Picker) -> None:
        price, quality, ttft, speed, context, limit, weight = arbitrary

        def few(constants: Sequence[T], extra: T, most: int = 4) -> list[T]:
            options = [*constants, extra, extra, extra]
            return [pick.pick(options) for _ in range(1 + pick.pick(range(most)))]

        prices = few(PRICES, price)
        self.prices = [(pick.pick(prices), pick.pick(prices)) for _ in range(pick.pick(range(4)))]
        self.prices.append((prices[0], prices[-1]))
        self.quality = few(QUALITIES, quality)
        self.ttft = few(TTFTS, ttft)
        self.speed = few(THROUGHPUTS, speed)
        self.context = few(CONTEXTS, context)
        self.limits = few(LIMIT_VALUES, limit, 2)
        self.weights = few(WEIGHTS, weight, 3)
        self.modalities = [
            ["text"],
            *(pick.subset(MODALITIES, 4) for _ in range(pick.pick(range(3)))),
        ]
        self.params = [pick.subset(PARAMETERS, 5) for _ in range(1 + pick.pick(range(3)))]


@st.composite
def palettes(draw: st.DrawFn) -> Palettes:
    return Palettes(draw(arbitrary_figures), draw(pickers))


# --- the catalogue -------------------------------------------------------------------------------


def make_model(model_id: str, p: Palettes, pick: Picker) -> Model:
    prices = pick.pick(p.prices)
    if pick.one_in(8):
        prices = (0.0, 0.0)  # free
    if pick.one_in(10):
        prices = pick.pick([(-1.0, -1.0), (0.0, -1.0), (-1.0, 2e-6), (1e-6, -1e-300)])  # dynamic
    return {
        "id": model_id,
        "context_length": pick.pick(p.context),
        "prompt_price": prices[0],
        "completion_price": prices[1],
        "input_modalities": pick.pick(p.modalities),
        "output_modalities": pick.pick(OUTPUTS),
        "kind": pick.pick(KINDS),
        "realtime": not pick.one_in(10),
        "supported_parameters": pick.pick(p.params),
        "quality": pick.pick(p.quality),
        "quality_estimated": pick.one_in(2),
        "ttft_s": pick.pick(p.ttft),
        "tokens_per_s": pick.pick(p.speed),
        "latency_estimated": pick.one_in(2),
    }


@st.composite
def model_ids(draw: st.DrawFn, reuse: Sequence[str] = ()) -> list[str]:
    """1 to 60 distinct ids of a few authors; with `reuse`, many of them are taken from it."""
    picker = draw(pickers)
    count = draw(st.integers(min_value=1, max_value=60))
    ids: dict[str, None] = {}
    for _ in range(count):
        if reuse and picker.one_in(2):
            ids[picker.pick(reuse)] = None
        else:
            suffix = ":free" if picker.one_in(6) else ""
            ids[f"{picker.pick(AUTHORS)}/{draw(names)}{suffix}"] = None
    return list(ids)


@st.composite
def catalogues(draw: st.DrawFn, p: Palettes, reuse: Sequence[str] = ()) -> list[Model]:
    return [make_model(model_id, p, draw(pickers)) for model_id in draw(model_ids(reuse))]


# --- live stats ----------------------------------------------------------------------------------


def stats_entry(model_id: str, p: Palettes, pick: Picker) -> Stats:
    """A valid entry for `update_stats`; each figure is missing, None or a value."""
    entry: Stats = {"id": model_id}
    figures = {"ttft_s": p.ttft, "tokens_per_s": p.speed}
    for key, values in figures.items():
        value = pick.pick([ABSENT, None, pick.pick(values)])
        if value is not ABSENT:
            entry[key] = value
    estimated = pick.pick([ABSENT, None, ABSENT, True, False])
    if estimated is not ABSENT:
        entry["latency_estimated"] = estimated
    circuit = pick.pick([ABSENT, False, ABSENT, True])
    if circuit is not ABSENT:
        entry["circuit_open"] = circuit
    return entry


BAD_FIGURES: list[Stats] = [
    {"id": UNKNOWN_ID},
    {"ttft_s": -1.0},
    {"ttft_s": math.inf},
    {"ttft_s": math.nan},
    {"tokens_per_s": 0.0},
    {"tokens_per_s": -3.0},
]


def stats_batch(ids: Sequence[str], p: Palettes, pick: Picker, *, bad: bool = False) -> list[Stats]:
    """Valid entries; with `bad`, one more that names an unknown model or has a bad figure."""
    batch = [stats_entry(pick.pick(ids), p, pick) for _ in range(pick.pick(range(6)))]
    if bad:
        broken = stats_entry(pick.pick(ids), p, pick) | pick.pick(BAD_FIGURES)
        batch.insert(pick.pick(range(len(batch) + 1)), broken)
    return batch


# --- requests ------------------------------------------------------------------------------------

BAD_LIMITS = [-1.0, -1e-300, math.inf, -math.inf, math.nan]
BAD_PATTERNS = ["", "*", "/*", "a*", "a/*/*", "*/m", "a/m*"]
CONSTRAINTS = (
    "min_context",
    "input_modalities",
    "output_modalities",
    "required_parameters",
    *ref.LIMITS,
    "allow_models",
    "deny_models",
    "allow_providers",
    "deny_providers",
    "free",
)


def figure(model: Model, key: str) -> float:
    value = model[key]
    assert isinstance(value, float), key
    return value


def expected_cost(model: Model, prompt_tokens: int, output_tokens: int) -> float:
    prompt = float(prompt_tokens) * figure(model, "prompt_price")
    return prompt + float(output_tokens) * figure(model, "completion_price")


def constraint_value(
    name: str, models: Sequence[Model], p: Palettes, pick: Picker, tokens: tuple[int, int]
) -> object:
    """A value for one constraint, most often on a boundary of the catalogue; rarely invalid."""
    model = pick.pick(models)
    ids = [str(m["id"]) for m in models]
    authors = sorted({i.split("/", 1)[0] for i in ids})
    if name in ref.LIMITS:
        if pick.one_in(12):
            return pick.pick(BAD_LIMITS)
        if name == "max_prompt_price_per_mtok":
            own = figure(model, "prompt_price") * 1e6
        elif name == "max_completion_price_per_mtok":
            own = figure(model, "completion_price") * 1e6
        elif name == "max_request_cost_usd":
            own = expected_cost(model, *tokens)
        else:
            own = pick.pick(p.ttft)
        return pick.pick([own, pick.pick(p.limits)])
    if name == "min_context":
        return pick.pick([model["context_length"], pick.pick(p.context)])
    if name == "input_modalities":
        return ["text", "smell"] if pick.one_in(12) else pick.subset(MODALITIES, 3)
    if name == "output_modalities":
        return ["embeddings"] if pick.one_in(12) else pick.subset(MODALITIES, 2)
    if name == "required_parameters":
        unknown = ["no-such-parameter"] if pick.one_in(8) else []  # no model supports it
        return [*pick.subset(PARAMETERS, 3), *unknown]
    if name in ("allow_models", "deny_models"):
        if pick.one_in(12):
            return [pick.pick(BAD_PATTERNS), *pick.subset(ids, 1)]
        patterns = [
            *ids,
            *(f"{a}/*" for a in (*authors, *AUTHORS)),
            *("a/", "zz/*", "a/m", "openai/m"),
        ]
        return pick.subset(patterns, 3)
    if name in ("allow_providers", "deny_providers"):
        return pick.subset([*authors, *AUTHORS, "zz", "", "a/m"], 3)
    assert name == "free"
    return pick.pick(["only", "exclude", "any"])


@st.composite
def requests(draw: st.DrawFn, models: Sequence[Model], p: Palettes) -> Request:
    pick = draw(pickers)
    tokens = (draw(token_counts), draw(token_counts))
    modes = list(MODE_WEIGHTS.values())
    w = (pick.pick(p.weights), pick.pick(p.weights), pick.pick(p.weights))
    request_weights = pick.pick([pick.pick(modes), w, (0.5, 0.5, 1e-13)])
    if pick.one_in(15):
        request_weights = pick.pick([(0.0, 0.0, 0.0), (1.0, -1.0, 1.0), (math.nan, 1.0, 1.0)])
        request_weights = pick.pick([request_weights, (1.0, math.inf, 0.0), (0.0, 0.0, -0.0)])
    top_k = pick.pick([5, 1, 2, 3, 4, 10, 65])
    fields = {pick.pick(CONSTRAINTS): None for _ in range(pick.pick(range(4)))}
    return {
        "weights": request_weights,
        "prompt_tokens": tokens[0],
        "output_tokens": tokens[1],
        "top_k": 0 if pick.one_in(20) else top_k,
        "constraints": {f: constraint_value(f, models, p, pick, tokens) for f in fields},
    }


# --- running both --------------------------------------------------------------------------------


def specs(models: Sequence[Model]) -> list[ModelSpec]:
    """The reference's models as the native scorer takes them."""
    return [ModelSpec(**m) for m in models]  # type: ignore[arg-type]


def live(batch: Sequence[Stats]) -> list[LiveStats]:
    """The reference's stats as the native scorer takes them; a bad figure raises here."""
    return [LiveStats(**entry) for entry in batch]  # type: ignore[arg-type]


def apply_stats(stats: dict[str, Stats], batch: Sequence[Stats]) -> None:
    """Update the reference's stats as `Scorer.update_stats` does: each entry replaces the last."""
    for entry in batch:
        stats[str(entry["id"])] = entry


def set_free_available(scorer: Scorer, pick: Picker) -> bool:
    """Now and then, the free variants' allowance is spent."""
    available = not pick.one_in(5)
    scorer.set_free_available(available)
    return available


def native_rank(scorer: Scorer, request: Request) -> Ranking:
    return scorer.rank(
        request["weights"],
        prompt_tokens=request["prompt_tokens"],
        output_tokens=request["output_tokens"],
        top_k=request["top_k"],
        constraints=Constraints(**request["constraints"]),
    )


def outcome(what: str) -> None:
    """Count outcomes for `pytest --hypothesis-show-statistics`."""
    if currently_in_test_context():
        event(what)


def close(a: float, b: float) -> bool:
    return abs(a - b) <= TOLERANCE


def assert_same_outcome(
    scorer: Scorer,
    models: Sequence[Model],
    stats: Mapping[str, Stats],
    request: Request,
    free_available: bool = True,
) -> None:
    """Rank with both scorers; they must agree on the ranking, or raise the same kind of error."""
    want: ref.RefRanking | ref.NoEligible | ValueError
    try:
        want = ref.rank(models, stats, **request, free_available=free_available)
    except (ref.NoEligible, ValueError) as refused:
        want = refused
    if isinstance(want, ref.NoEligible):
        outcome("no eligible model")
        with pytest.raises(NoEligibleModel) as empty:
            native_rank(scorer, request)
        named = re.findall(r"([a-z_]+): (\d+)", str(empty.value))
        assert [(name, int(n)) for name, n in named] == list(want.removed.items())
        return
    if isinstance(want, ValueError):
        outcome("invalid request")
        with pytest.raises(InvalidRequest):
            native_rank(scorer, request)
        return

    outcome("ranked all eligible" if want.eligible <= request["top_k"] else "ranked the top k")
    got = native_rank(scorer, request)
    assert [c.model_id for c in got.candidates] == [c.model_id for c in want.candidates]
    assert (got.eligible, list(got.removed.items())) == (want.eligible, list(want.removed.items()))
    assert got.weights == want.weights
    assert all(map(close, got.normalisation, want.normalisation)), (got.normalisation, want)
    figures: tuple[str, ...] = ("score", "latency_term", "cost_term", "quality_term")
    figures += ("expected_cost_usd", "expected_latency_s")
    native_only = ("ttft_s", "tokens_per_s")
    for g in got.candidates:
        assert all(math.isfinite(getattr(g, name)) for name in native_only)
    for g, w in zip(got.candidates, want.candidates, strict=True):
        for name in figures:
            assert close(getattr(g, name), getattr(w, name)), (w.model_id, name, g, w)
        assert (g.quality_estimated, g.latency_estimated) == (
            w.quality_estimated,
            w.latency_estimated,
        ), w.model_id


# --- the tests -----------------------------------------------------------------------------------

COMMON = settings(
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    report_multiple_bugs=False,  # one disagreement, shrunk, is enough to report
)


@settings(COMMON, max_examples=1500)
@given(data=st.data())
def test_rankings_match_the_reference(data: st.DataObject) -> None:
    p = data.draw(palettes(), label="palettes")
    models = data.draw(catalogues(p), label="models")
    ids = [str(m["id"]) for m in models]
    scorer = Scorer("v1", specs(models))
    stats: dict[str, Stats] = {}
    for _ in range(data.draw(st.integers(min_value=0, max_value=3), label="batches")):
        pick = data.draw(pickers, label="stats")
        batch = stats_batch(ids, p, pick)
        scorer.update_stats(live(batch))
        apply_stats(stats, batch)
        if pick.one_in(4):
            # One bad entry refuses the batch (a bad figure, already as the stats are made):
            # nothing in it may take effect.
            with pytest.raises(InvalidRequest):
                scorer.update_stats(live(stats_batch(ids, p, pick, bad=True)))
    free_available = set_free_available(scorer, data.draw(pickers, label="free"))
    for request in data.draw(st.lists(requests(models, p), min_size=1, max_size=4), label="reqs"):
        assert_same_outcome(scorer, models, stats, request, free_available)


@settings(COMMON, max_examples=400)
@given(data=st.data())
def test_stats_carried_into_a_new_catalogue_match_the_reference(data: st.DataObject) -> None:
    p = data.draw(palettes(), label="palettes")
    first = data.draw(catalogues(p), label="first")
    first_ids = [str(m["id"]) for m in first]
    batch = stats_batch(first_ids, p, data.draw(pickers, label="stats"))
    second = data.draw(catalogues(p, reuse=first_ids), label="second")
    scorer = Scorer("v1", specs(first))
    scorer.update_stats(live(batch))
    free_available = set_free_available(scorer, data.draw(pickers, label="free"))
    scorer.replace_catalogue("v2", specs(second))
    stats: dict[str, Stats] = {}
    apply_stats(stats, batch)
    kept = {str(m["id"]) for m in second}
    stats = {model_id: entry for model_id, entry in stats.items() if model_id in kept}
    for request in data.draw(st.lists(requests(second, p), min_size=1, max_size=3), label="reqs"):
        assert_same_outcome(scorer, second, stats, request, free_available)


def test_a_one_ulp_faster_model_ranks_as_specified() -> None:
    """Expected latency is ttft + output / throughput, a division: at 10 output tokens a
    throughput one ulp below 250 takes 0.04000000000000001 s against 0.04 s. Their logarithms
    are the same float, so the latency range is degenerate: both score 1 and the tie breaks on
    id. (Hypothesis found the case on the linear scale, where a precomputed 1 / throughput
    ranked them wrongly; both scorers must still divide and agree.)
    """
    spec = {
        "context_length": 1000,
        "prompt_price": 1e-6,
        "completion_price": 1e-6,
        "input_modalities": ["text"],
        "output_modalities": ["text"],
        "supported_parameters": [],
        "quality": 0.5,
        "quality_estimated": False,
        "ttft_s": 0.0,
        "latency_estimated": False,
    }
    models: list[Model] = [
        {**spec, "id": "a/slow", "tokens_per_s": math.nextafter(250.0, 0.0)},
        {**spec, "id": "b/fast", "tokens_per_s": 250.0},
    ]
    request: Request = {
        "weights": (1.0, 0.0, 0.0),
        "prompt_tokens": 0,
        "output_tokens": 10,
        "top_k": 2,
        "constraints": {},
    }
    want = ref.rank(models, {}, **request)
    assert [c.expected_latency_s for c in want.candidates] == [0.04000000000000001, 0.04]
    assert [(c.model_id, c.score) for c in want.candidates] == [("a/slow", 1.0), ("b/fast", 1.0)]
    assert_same_outcome(Scorer("v1", specs(models)), models, {}, request)


def test_the_reference_uses_the_scorers_constants() -> None:
    names = ("COST_FLOOR_USD", "LATENCY_FLOOR_S", "LATENCY_SPAN", "LATENCY_RANK")
    names += ("LATENCY_OUTLIER", "LATENCY_OUTLIER_POOL")
    assert [getattr(ref, n) for n in names] == [getattr(native, n) for n in names]
