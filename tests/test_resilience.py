"""Circuit breakers and the retry budget, on a clock the tests move by hand."""

from __future__ import annotations

import pytest

from service.resilience import CircuitBreakers, CircuitPolicy, RetryBudget

M = "acme/model"


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def breakers(clock: FakeClock, **policy: float) -> CircuitBreakers:
    return CircuitBreakers(CircuitPolicy(**policy), clock=clock)  # type: ignore[arg-type]


def fail(cb: CircuitBreakers, model: str = M, times: int = 1) -> None:
    for _ in range(times):
        assert cb.acquire(model)
        cb.record(model, ok=False)


def succeed(cb: CircuitBreakers, model: str = M, times: int = 1) -> None:
    for _ in range(times):
        assert cb.acquire(model)
        cb.record(model, ok=True)


def opened(clock: FakeClock, **policy: float) -> CircuitBreakers:
    """Breakers whose circuit for M has just opened (by consecutive failures)."""
    cb = breakers(clock, **policy)
    fail(cb, times=cb.policy.consecutive_failures)
    assert cb.state(M) == "open"
    return cb


# --- circuit breaker: opening ---------------------------------------------------------------


def test_policy_defaults() -> None:
    assert CircuitPolicy() == CircuitPolicy(
        consecutive_failures=5,
        failure_rate=0.5,
        min_requests=10,
        window_s=30.0,
        cooldown_s=30.0,
        half_open_probes=1,
        max_cooldown_s=300.0,
        max_ejected_share=0.2,
    )


@pytest.mark.parametrize(
    "bad",
    [
        {"consecutive_failures": 0},
        {"failure_rate": -0.1},
        {"failure_rate": 1.5},
        {"min_requests": 0},
        {"window_s": 0.0},
        {"cooldown_s": -1.0},
        {"half_open_probes": 0},
        {"max_cooldown_s": 10.0},
        {"max_ejected_share": 0.0},
        {"max_ejected_share": 1.5},
    ],
)
def test_policy_rejects_nonsense(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError, match=next(iter(bad))):
        CircuitPolicy(**bad)  # type: ignore[arg-type]


def test_unknown_model_is_closed(clock: FakeClock) -> None:
    cb = breakers(clock)
    assert cb.state(M) == "closed"
    assert cb.acquire(M)
    cb.release(M)
    assert cb.state(M) == "closed"
    assert cb.open_models() == set()


@pytest.mark.parametrize("n", [1, 3, 5])
def test_opens_after_consecutive_failures(clock: FakeClock, n: int) -> None:
    cb = breakers(clock, consecutive_failures=n, min_requests=1000)
    fail(cb, times=n - 1)
    assert cb.state(M) == "closed"
    assert cb.acquire(M)
    cb.record(M, ok=False)
    assert cb.state(M) == "open"
    assert not cb.acquire(M)
    assert cb.open_models() == {M}


def test_success_resets_consecutive_failures(clock: FakeClock) -> None:
    cb = breakers(clock, consecutive_failures=3, min_requests=1000)
    for _ in range(5):
        fail(cb, times=2)
        succeed(cb)
    assert cb.state(M) == "closed"
    fail(cb, times=2)
    assert cb.state(M) == "closed"
    fail(cb)
    assert cb.state(M) == "open"


def test_opens_when_failure_rate_exceeded(clock: FakeClock) -> None:
    cb = breakers(clock, consecutive_failures=1000, min_requests=10, failure_rate=0.5)
    for _ in range(5):
        succeed(cb)
        fail(cb)
    # 5 of 10: at the rate, not above it.
    assert cb.state(M) == "closed"
    fail(cb)  # 6 of 11
    assert cb.state(M) == "open"
    assert cb.open_models() == {M}


def test_failure_rate_needs_min_requests(clock: FakeClock) -> None:
    cb = breakers(clock, consecutive_failures=1000, min_requests=10, failure_rate=0.5)
    fail(cb, times=9)  # 100 % failures, but only 9 outcomes
    assert cb.state(M) == "closed"
    fail(cb)
    assert cb.state(M) == "open"


def test_failure_rate_counts_successes(clock: FakeClock) -> None:
    cb = breakers(clock, consecutive_failures=1000, min_requests=10, failure_rate=0.5)
    succeed(cb, times=10)
    fail(cb, times=10)  # 10 of 20: not above the rate
    assert cb.state(M) == "closed"
    fail(cb)
    assert cb.state(M) == "open"


@pytest.mark.parametrize(("later", "expect"), [(29.5, "open"), (30.0, "closed")])
def test_window_forgets_old_failures(clock: FakeClock, later: float, expect: str) -> None:
    cb = breakers(clock, consecutive_failures=1000, min_requests=10, window_s=30.0)
    start = clock.now
    fail(cb, times=9)
    clock.now = start + later
    fail(cb)  # 10 of 10 if the first nine still count, 1 of 1 if they are forgotten
    assert cb.state(M) == expect


@pytest.mark.parametrize(("later", "expect"), [(29.5, "closed"), (30.0, "open")])
def test_window_forgets_old_successes(clock: FakeClock, later: float, expect: str) -> None:
    cb = breakers(clock, consecutive_failures=1000, min_requests=10, window_s=30.0)
    start = clock.now
    succeed(cb, times=100)
    clock.now = start + later
    fail(cb, times=10)  # 10 of 110 if the successes still count, 10 of 10 if forgotten
    assert cb.state(M) == expect


def test_models_are_independent(clock: FakeClock) -> None:
    cb = breakers(clock, consecutive_failures=2, min_requests=1000)
    fail(cb, "a")
    fail(cb, "b")
    assert cb.state("a") == cb.state("b") == "closed"
    fail(cb, "a")
    assert cb.state("a") == "open"
    assert cb.state("b") == "closed"
    assert cb.open_models() == {"a"}


# --- circuit breaker: cooldown and half-open ------------------------------------------------


def test_open_refuses_until_cooldown_then_half_opens(clock: FakeClock) -> None:
    cb = opened(clock, cooldown_s=30.0)
    start = clock.now
    clock.now = start + 29.9
    assert not cb.acquire(M)
    assert cb.state(M) == "open"
    assert cb.open_models() == {M}
    clock.now = start + 30.0
    assert cb.state(M) == "half_open"
    assert cb.open_models() == set()


@pytest.mark.parametrize("probes", [1, 2, 3])
def test_half_open_lets_exactly_the_probes_through(clock: FakeClock, probes: int) -> None:
    cb = opened(clock, cooldown_s=30.0, half_open_probes=probes)
    clock.now += 30.0
    granted = [cb.acquire(M) for _ in range(probes + 3)]
    assert granted == [True] * probes + [False] * 3
    assert cb.state(M) == "half_open"


def test_acquire_after_cooldown_takes_a_probe_without_asking_state(clock: FakeClock) -> None:
    cb = opened(clock, cooldown_s=30.0)
    clock.now += 30.0
    assert cb.acquire(M)
    assert not cb.acquire(M)


def test_probe_success_closes_and_resets_consecutive(clock: FakeClock) -> None:
    cb = opened(clock, consecutive_failures=3, min_requests=1000, cooldown_s=30.0)
    clock.now += 30.0
    assert cb.acquire(M)
    cb.record(M, ok=True)
    assert cb.state(M) == "closed"
    assert cb.acquire(M)
    assert cb.acquire(M)  # closed: no probe limit any more
    fail(cb, times=2)
    assert cb.state(M) == "closed"
    fail(cb)
    assert cb.state(M) == "open"


def test_probe_success_resets_failure_window(clock: FakeClock) -> None:
    cb = breakers(clock, consecutive_failures=1000, min_requests=4, window_s=300.0)
    succeed(cb, times=2)
    fail(cb, times=3)  # 3 of 5
    assert cb.state(M) == "open"
    clock.now += 30.0
    assert cb.acquire(M)
    cb.record(M, ok=True)
    assert cb.state(M) == "closed"
    fail(cb, times=3)  # 3 of 3, under min_requests if the window was cleared
    assert cb.state(M) == "closed"
    fail(cb)
    assert cb.state(M) == "open"


def test_probe_failure_reopens_for_twice_the_cooldown(clock: FakeClock) -> None:
    cb = opened(clock, cooldown_s=30.0)
    clock.now += 30.0
    probe_time = clock.now
    assert cb.acquire(M)
    cb.record(M, ok=False)
    assert cb.state(M) == "open"
    assert cb.open_models() == {M}
    clock.now = probe_time + 59.9
    assert not cb.acquire(M)
    assert cb.state(M) == "open"
    clock.now = probe_time + 60.0
    assert cb.state(M) == "half_open"
    assert cb.acquire(M)


def fail_probe(cb: CircuitBreakers, clock: FakeClock) -> float:
    """Wait out the cooldown, fail the probe; returns the new cooldown."""
    clock.now += cb.next_probe_in()
    assert cb.acquire(M)
    cb.record(M, ok=False)
    return cb.next_probe_in()


def test_repeat_offenders_rest_longer_up_to_the_longest_cooldown(clock: FakeClock) -> None:
    cb = opened(clock, cooldown_s=30.0, max_cooldown_s=200.0)
    assert cb.next_probe_in() == 30.0
    assert [fail_probe(cb, clock) for _ in range(4)] == [60.0, 120.0, 200.0, 200.0]


def test_reopening_soon_after_closing_is_a_repeat_offence(clock: FakeClock) -> None:
    cb = opened(clock, cooldown_s=30.0, max_cooldown_s=300.0)
    assert fail_probe(cb, clock) == 60.0
    clock.now += 60.0
    succeed(cb)  # the probe closes it
    assert cb.state(M) == "closed"
    clock.now += 299.0
    fail(cb, times=cb.policy.consecutive_failures)
    assert cb.next_probe_in() == 120.0


def test_a_model_healthy_for_the_longest_cooldown_starts_over(clock: FakeClock) -> None:
    cb = opened(clock, cooldown_s=30.0, max_cooldown_s=300.0)
    assert fail_probe(cb, clock) == 60.0
    clock.now += 60.0
    succeed(cb)
    clock.now += 300.0
    fail(cb, times=cb.policy.consecutive_failures)
    assert cb.next_probe_in() == 30.0


def test_no_more_than_the_ejected_share_of_models_is_open(clock: FakeClock) -> None:
    capped: list[str] = []
    cb = CircuitBreakers(
        CircuitPolicy(max_ejected_share=0.2),
        clock=clock,
        models=lambda: 10,
        on_capped=capped.append,
    )
    models = [f"acme/m{i}" for i in range(4)]
    for model in models:
        fail(cb, model, times=cb.policy.consecutive_failures)
    assert cb.open_models() == set(models[:2])
    assert capped == models[2:]
    # Failures past the cap are still counted: the model opens once there is room.
    clock.now += cb.policy.cooldown_s
    succeed(cb, models[0])
    fail(cb, models[2])
    assert cb.open_models() == {models[2]}


def test_at_least_one_model_may_be_open(clock: FakeClock) -> None:
    cb = CircuitBreakers(CircuitPolicy(max_ejected_share=0.01), clock=clock, models=lambda: 3)
    fail(cb, times=cb.policy.consecutive_failures)
    assert cb.open_models() == {M}


def test_next_probe_is_the_first_cooldown_to_end(clock: FakeClock) -> None:
    cb = breakers(clock, cooldown_s=30.0)
    assert cb.next_probe_in() == 0.0
    fail(cb, "acme/a", times=cb.policy.consecutive_failures)
    clock.now += 10.0
    fail(cb, "acme/b", times=cb.policy.consecutive_failures)
    assert cb.next_probe_in() == 20.0


def test_release_frees_a_probe_without_counting(clock: FakeClock) -> None:
    cb = opened(clock, cooldown_s=30.0)
    clock.now += 30.0
    version = cb.version
    assert cb.acquire(M)
    assert not cb.acquire(M)
    for _ in range(3):
        cb.release(M)
        assert cb.state(M) == "half_open"
        assert cb.acquire(M)
        assert not cb.acquire(M)
    assert cb.version == version
    cb.record(M, ok=True)
    assert cb.state(M) == "closed"


def test_release_without_a_probe_in_flight_does_not_add_slots(clock: FakeClock) -> None:
    cb = opened(clock, cooldown_s=30.0)
    clock.now += 30.0
    cb.release(M)
    cb.release(M)
    assert cb.acquire(M)
    assert not cb.acquire(M)


def test_late_outcomes_while_open_are_ignored(clock: FakeClock) -> None:
    cb = breakers(clock, consecutive_failures=2, min_requests=1000, cooldown_s=30.0)
    for _ in range(3):  # slow attempts, started while closed
        assert cb.acquire(M)
    fail(cb, times=2)
    start = clock.now
    version = cb.version
    clock.now = start + 10.0
    # They end while open: that neither closes the circuit nor extends the cooldown.
    cb.record(M, ok=True)
    cb.record(M, ok=False)
    cb.record(M, ok=False)
    assert cb.state(M) == "open"
    assert cb.version == version
    clock.now = start + 30.0
    assert cb.state(M) == "half_open"


def test_late_outcome_while_half_open_without_probe_is_ignored(clock: FakeClock) -> None:
    cb = opened(clock, cooldown_s=30.0)
    clock.now += 30.0
    assert cb.state(M) == "half_open"
    cb.record(M, ok=False)
    assert cb.state(M) == "half_open"
    cb.record(M, ok=True)
    assert cb.state(M) == "half_open"
    assert cb.acquire(M)


def test_open_models_excludes_half_open(clock: FakeClock) -> None:
    cb = breakers(clock, consecutive_failures=1, min_requests=1000, cooldown_s=30.0)
    fail(cb, "early")
    clock.now += 20.0
    fail(cb, "late")
    assert cb.open_models() == {"early", "late"}
    clock.now += 10.0
    assert cb.open_models() == {"late"}
    assert cb.state("early") == "half_open"
    assert cb.acquire("early")  # still a candidate, so the probe gets through
    assert not cb.acquire("late")


def test_open_models_returns_a_copy(clock: FakeClock) -> None:
    cb = opened(clock)
    cb.open_models().clear()
    assert cb.open_models() == {M}


# --- circuit breaker: change version --------------------------------------------------------


def test_version_bumps_on_each_transition_only(clock: FakeClock) -> None:
    cb = breakers(clock, consecutive_failures=2, min_requests=1000, cooldown_s=30.0)
    assert cb.version == 0
    assert cb.changed_since(0) is None
    fail(cb)
    succeed(cb, times=3)
    fail(cb)
    assert cb.changed_since(0) is None  # outcomes without a transition
    fail(cb)  # closed -> open
    assert cb.changed_since(0) == (1, {M})
    assert cb.changed_since(1) is None
    assert not cb.acquire(M)
    clock.now += 29.0
    assert cb.changed_since(1) is None
    clock.now += 1.0
    assert cb.changed_since(1) == (2, set())  # open -> half_open, observed here
    assert cb.version == 2
    assert cb.acquire(M)  # taking a probe is no transition
    assert cb.changed_since(2) is None
    cb.record(M, ok=False)  # half_open -> open
    assert cb.changed_since(2) == (3, {M})
    clock.now += 60.0  # a failed probe doubles the cooldown
    assert cb.state(M) == "half_open"  # observed through state()
    assert cb.changed_since(3) == (4, set())
    assert cb.acquire(M)
    cb.release(M)
    assert cb.changed_since(4) is None
    assert cb.acquire(M)
    cb.record(M, ok=True)  # half_open -> closed
    assert cb.changed_since(4) == (5, set())
    succeed(cb, times=5)
    assert cb.changed_since(5) is None


def test_version_observes_time_driven_transition_of_every_model(clock: FakeClock) -> None:
    cb = breakers(clock, consecutive_failures=1, min_requests=1000, cooldown_s=30.0)
    fail(cb, "a")
    fail(cb, "b")
    assert cb.changed_since(0) == (2, {"a", "b"})
    clock.now += 30.0
    assert cb.changed_since(2) == (4, set())


# --- retry budget ---------------------------------------------------------------------------


def spend_all(budget: RetryBudget, limit: int = 10_000) -> int:
    spent = 0
    while budget.try_spend():
        spent += 1
        assert spent < limit, "budget never ran out"
    return spent


def test_retry_budget_floor_without_traffic(clock: FakeClock) -> None:
    budget = RetryBudget(ratio=0.2, min_per_second=5.0, window_s=10.0, clock=clock)
    assert spend_all(budget) == 50  # 5/s over 10 s
    assert not budget.try_spend()


def test_retry_budget_floor_beats_a_small_ratio(clock: FakeClock) -> None:
    budget = RetryBudget(ratio=0.2, min_per_second=5.0, window_s=10.0, clock=clock)
    for _ in range(100):
        budget.record_request()
    assert spend_all(budget) == 50  # max(0.2 * 100, 50)


@pytest.mark.parametrize(("requests", "retries"), [(1000, 200), (7, 2), (0, 0), (4, 1)])
def test_retry_budget_ratio_cap(clock: FakeClock, requests: int, retries: int) -> None:
    budget = RetryBudget(ratio=0.2, min_per_second=0.0, window_s=10.0, clock=clock)
    for _ in range(requests):
        budget.record_request()
    assert spend_all(budget) == retries  # retries < 0.2 * requests


def test_retry_budget_ratio_beats_the_floor(clock: FakeClock) -> None:
    budget = RetryBudget(ratio=0.2, min_per_second=5.0, window_s=10.0, clock=clock)
    for _ in range(1000):
        budget.record_request()
    assert spend_all(budget) == 200
    budget.record_request()
    budget.record_request()
    budget.record_request()
    budget.record_request()
    budget.record_request()
    assert budget.try_spend()  # 1005 requests: up to 201 retries
    assert not budget.try_spend()


def test_retry_budget_retries_slide_out_of_the_window(clock: FakeClock) -> None:
    budget = RetryBudget(ratio=0.2, min_per_second=5.0, window_s=10.0, clock=clock)
    start = clock.now
    assert spend_all(budget) == 50
    clock.now = start + 9.9
    assert not budget.try_spend()
    clock.now = start + 10.0
    assert spend_all(budget) == 50


def test_retry_budget_requests_slide_out_of_the_window(clock: FakeClock) -> None:
    budget = RetryBudget(ratio=0.2, min_per_second=5.0, window_s=10.0, clock=clock)
    start = clock.now
    for _ in range(1000):
        budget.record_request()
    clock.now = start + 3.0
    assert spend_all(budget) == 200
    clock.now = start + 10.0
    # The requests are gone, the 200 retries are not: over the 50 floor.
    assert not budget.try_spend()
    clock.now = start + 13.0
    assert spend_all(budget) == 50


def test_retry_budget_window_slides_gradually(clock: FakeClock) -> None:
    budget = RetryBudget(ratio=0.2, min_per_second=0.0, window_s=10.0, clock=clock)
    start = clock.now
    for second in range(10):  # 100 requests per second for 10 s
        clock.now = start + second
        for _ in range(100):
            budget.record_request()
    clock.now = start + 9.5
    assert spend_all(budget) == 200
    clock.now = start + 10.0  # the first second's 100 requests leave
    assert not budget.try_spend()
    for _ in range(100):
        budget.record_request()
    assert not budget.try_spend()  # 1000 in the window again, 200 retries in it
    clock.now = start + 19.5  # the retries leave; only second 10's requests remain
    assert spend_all(budget) == 20


def test_retry_budget_memory_is_bounded(clock: FakeClock) -> None:
    budget = RetryBudget(ratio=0.2, min_per_second=5.0, window_s=10.0, clock=clock)
    start = clock.now
    for step in range(10_000):  # 1000 s of traffic, 10 events per second
        clock.now = start + step / 10
        budget.record_request()
        budget.try_spend()
        assert len(budget._window) <= 10
    assert len(budget._window) == 10
    # And still right: 100 requests in the window, so max(20, 50) = 50 retries,
    # all of which the loop above already spent.
    assert not budget.try_spend()
    clock.now += 10.0
    assert spend_all(budget) == 50


def test_retry_budget_short_window(clock: FakeClock) -> None:
    budget = RetryBudget(ratio=0.0, min_per_second=10.0, window_s=0.5, clock=clock)
    clock.now = 100.0
    assert spend_all(budget) == 5  # 10/s over 0.5 s
    clock.now = 100.42
    assert not budget.try_spend()
    clock.now = 100.52
    assert spend_all(budget) == 5
    assert len(budget._window) <= 10


def test_breaker_window_memory_is_bounded(clock: FakeClock) -> None:
    cb = breakers(clock, consecutive_failures=1000, min_requests=10**9, window_s=30.0)
    start = clock.now
    for step in range(3000):
        clock.now = start + step / 10
        succeed(cb)
        fail(cb)
    assert len(cb._circuits[M].outcomes) <= 30


@pytest.mark.parametrize(
    "bad",
    [{"ratio": -0.1}, {"min_per_second": -1.0}, {"window_s": 0.0}],
)
def test_retry_budget_rejects_nonsense(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError, match=next(iter(bad))):
        RetryBudget(**bad)  # type: ignore[arg-type]
