"""tutor.realtime.failures: what a refusal or a failed response means, and how long to wait (pure)."""

from types import SimpleNamespace

import pytest

from tutor.realtime import failures
from tutor.realtime.failures import RateLimits, RetryPolicy, failed_response, refused_at_upgrade, refused_in_band


@pytest.mark.parametrize(
    "status, code, expected",
    [
        (401, "invalid_api_key", failures.AUTH),
        (403, "unsupported_country_region_territory", failures.AUTH),
        (429, "rate_limit_exceeded", failures.BUSY),
        (429, "insufficient_quota", failures.QUOTA),  # the REST API's quota 429
        (500, None, failures.BUSY),
        (503, None, failures.BUSY),
        (404, None, failures.ERROR),
    ],
)
def test_http_refusals_at_the_upgrade(status, code, expected):
    assert refused_at_upgrade(status, code) is expected


def test_in_band_refusals():
    assert refused_in_band("invalid_api_key") is failures.AUTH
    assert refused_in_band("missing_model") is failures.ERROR


@pytest.mark.parametrize(
    "code, error_type, expected, retry",
    [
        ("inference_rate_limit_exceeded", "invalid_request_error", failures.BUSY, True),
        ("rate_limit_exceeded", "tokens", failures.BUSY, True),
        ("insufficient_quota", "insufficient_quota", failures.QUOTA, False),
        (None, "insufficient_quota", failures.QUOTA, False),
        ("model_not_found", "invalid_request_error", failures.MODEL, False),
        (None, "server_error", failures.ERROR, True),
    ],
)
def test_failed_responses(code, error_type, expected, retry):
    failure = failed_response(code, error_type)
    assert failure is expected and failure.retry is retry


@pytest.mark.parametrize(
    "message, seconds",
    [
        ("Rate limit reached for gpt-4o-mini-realtime in organization org-xx on requests per day (RPD): Limit 1000, "
         "Used 1000, Requested 1. Please try again in 1m26.4s. Visit https://platform.openai.com to learn more.", 86.4),
        ("Please try again in 20ms.", 0.02),
        ("Please try again in 7s.", 7.0),
        ("Please try again in 2m.", 120.0),
        ("We're currently processing too many requests \u2014 please try again later.", None),
        (None, None),
    ],
)
def test_the_reset_an_error_message_asks_for(message, seconds):
    assert failures.reset_from_message(message) == (pytest.approx(seconds) if seconds is not None else None)


def limit(name, remaining, reset_seconds):
    return SimpleNamespace(name=name, limit=100, remaining=remaining, reset_seconds=reset_seconds)


def test_rate_limits_wait_for_the_exhausted_limit_to_reset():
    limits = RateLimits()
    limits.update([limit("requests", 10, 0.5), limit("tokens", 0, 3.0)], now=100.0)
    assert limits.wait(now=101.0) == pytest.approx(2.0)
    assert limits.wait(now=104.0) == 0.0
    limits.update([limit("tokens", 50, 0.1)], now=101.0)  # the limit has room again
    assert limits.wait(now=101.0) == 0.0


def test_retry_policy_backs_off_honours_what_the_api_asks_and_is_bounded():
    policy = RetryPolicy()
    assert [policy.delay(n) for n in (1, 2, 3, 4)] == [0.5, 1.0, 2.0, 4.0]
    assert policy.delay(1, asked=3.0) == 3.0
    assert policy.delay(2, asked=600.0) == policy.max_delay
    assert not policy.gives_up(4) and policy.gives_up(5)
