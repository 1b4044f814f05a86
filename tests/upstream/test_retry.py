"""The retry policy, the header parsers, the budget and the retry loop, without a network."""

from __future__ import annotations

import email.utils
import time

import pytest

from gateway.errors import ResourceExhausted, Unavailable
from gateway.upstream.retry import (
    AttemptFailed,
    RetryBudget,
    RetryPolicy,
    call_with_retries,
    parse_retry_after,
    should_retry_header,
)


def test_parse_retry_after_each_form() -> None:
    now = time.time()
    in_ten = email.utils.formatdate(now + 10, usegmt=True)
    assert parse_retry_after({"retry-after-ms": "250"}) == 0.25
    assert parse_retry_after({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    assert parse_retry_after({"retry-after": "2"}) == 2.0
    assert 8.5 <= parse_retry_after({"retry-after": in_ten}, now=now) <= 10.0  # type: ignore[operator]
    assert parse_retry_after({"retry-after": email.utils.formatdate(now - 60, usegmt=True)}) == 0


@pytest.mark.parametrize("value", ["soon", "-1", "nan", "inf", "", "1e999", "Mon, 99 Foo"])
def test_parse_retry_after_garbage_is_none(value: str) -> None:
    assert parse_retry_after({"retry-after": value}) is None
    assert parse_retry_after({"retry-after-ms": value}) is None


def test_should_retry_header_only_true_or_false() -> None:
    assert should_retry_header({"x-should-retry": "true"}) is True
    assert should_retry_header({"x-should-retry": "FALSE"}) is False
    assert should_retry_header({"x-should-retry": "maybe"}) is None
    assert should_retry_header({}) is None


def test_policy_backoff_full_jitter_capped() -> None:
    policy = RetryPolicy(initial_backoff=0.1, max_backoff=1.0)
    assert policy.backoff(0, rng=lambda: 0.0) == 0.0
    assert policy.backoff(0, rng=lambda: 0.5) == pytest.approx(0.05)
    assert policy.backoff(2, rng=lambda: 0.999) == pytest.approx(0.3996)
    assert policy.backoff(50, rng=lambda: 0.999) == pytest.approx(0.999)


def test_policy_is_immutable() -> None:
    policy = RetryPolicy()
    with pytest.raises(AttributeError):
        policy.max_attempts = 9  # type: ignore[misc]
    assert policy.with_changes(max_attempts=2).max_attempts == 2 and policy.max_attempts == 3


def test_policy_retryable_statuses_and_override() -> None:
    policy = RetryPolicy()
    assert all(policy.retryable_status(s, {}) for s in (408, 429, 500, 502, 503, 504))
    assert not policy.retryable_status(400, {}) and not policy.retryable_status(404, {})
    assert not policy.retryable_status(503, {"x-should-retry": "false"})
    assert policy.retryable_status(409, {"x-should-retry": "true"})
    assert not policy.retryable_status(401, {"x-should-retry": "true"})


def test_budget_earns_ratio_per_request_up_to_burst() -> None:
    budget = RetryBudget(ratio=0.2, burst=2)
    assert budget.try_spend() and budget.try_spend() and not budget.try_spend()
    for _ in range(5):
        budget.earn()
    assert budget.try_spend() and not budget.try_spend()


class Script:
    """An attempt function that fails a given number of times."""

    def __init__(self, failures: list[AttemptFailed]) -> None:
        self.failures = failures
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        if self.failures:
            raise self.failures.pop(0)
        return "ok"


def unavailable(*, sent: bool = True, retry_after: float | None = None) -> AttemptFailed:
    return AttemptFailed(Unavailable("down"), retryable=True, sent=sent, reason="http_503",
                         retry_after=retry_after)


async def run(script: Script, *, idempotent: bool = True, left: float | None = 10.0,
              budget: RetryBudget | None = None, recover=None) -> tuple[str, list[float]]:  # type: ignore[no-untyped-def]
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    result = await call_with_retries(
        script, policy=RetryPolicy(), budget=budget or RetryBudget(), idempotent=idempotent,
        remaining=lambda: left, recover=recover, sleep=sleep)
    return result, slept


async def test_retries_until_success_within_max_attempts() -> None:
    script = Script([unavailable(), unavailable()])
    assert (await run(script))[0] == "ok"
    assert script.calls == 3


async def test_gives_up_after_max_attempts() -> None:
    script = Script([unavailable() for _ in range(5)])
    with pytest.raises(Unavailable):
        await run(script)
    assert script.calls == 3


async def test_sent_request_not_retried_unless_idempotent() -> None:
    script = Script([unavailable(sent=True)])
    with pytest.raises(Unavailable):
        await run(script, idempotent=False)
    assert script.calls == 1
    never_sent = Script([unavailable(sent=False)])
    assert (await run(never_sent, idempotent=False))[0] == "ok"


async def test_retry_after_obeyed_exactly() -> None:
    _, slept = await run(Script([unavailable(retry_after=1.5)]))
    assert slept == [1.5]


async def test_retry_after_beyond_cap_answers_at_once_with_retry_info() -> None:
    failure = AttemptFailed(ResourceExhausted("slow down", retry_after=3600.0), retryable=True,
                            sent=True, reason="http_429", retry_after=3600.0)
    script = Script([failure])
    with pytest.raises(ResourceExhausted) as info:
        await run(script)
    assert script.calls == 1 and info.value.details.retry_after == 3600.0


async def test_wait_past_the_deadline_answers_at_once_with_retry_info() -> None:
    script = Script([unavailable(retry_after=2.0)])
    with pytest.raises(Unavailable) as info:
        await run(script, left=1.0)
    assert script.calls == 1 and info.value.details.retry_after == 2.0


async def test_empty_budget_stops_retries() -> None:
    budget = RetryBudget(ratio=0.0, burst=0)
    script = Script([unavailable()])
    with pytest.raises(Unavailable):
        await run(script, budget=budget)
    assert script.calls == 1


async def test_budget_bounds_amplification_over_many_requests() -> None:
    budget = RetryBudget(ratio=0.2, burst=5)
    attempts = 0
    for _ in range(200):
        script = Script([unavailable() for _ in range(3)])
        with pytest.raises(Unavailable):
            await run(script, budget=budget)
        attempts += script.calls
    assert attempts <= 200 * 1.2 + 5


async def test_recover_answers_before_a_resend() -> None:
    script = Script([unavailable()])

    async def recover() -> str:
        return "found"

    assert (await run(script, recover=recover))[0] == "found"
    assert script.calls == 1
