"""What an upstream failure means for the learner (pure: no I/O, no Django).

The Realtime API says no in three shapes, and Parla answers each the same way: the upstream's own text
goes to the log, the learner gets Parla's words and a code from the README's error table, and the
session records why it ended.

- An HTTP status at the websocket upgrade (401, 403, 429, 5xx): `refused_at_upgrade`.
- A refusal after the upgrade: an `error` event, then a close (a wrong key: `invalid_api_key`, close
  3000): `refused_in_band`.
- A response that ends `failed` with `status_details.error` (rate limit, quota, model access; the
  session lives on): `failed_response`. Rate limits and server errors are retried with backoff,
  honouring the reset the error or `rate_limits.updated` gives (`RetryPolicy`, `RateLimits`); quota
  and model access are not: retrying cannot help.

The codes and messages the API uses are the simulator's (tutor/realtime/simulator/errors.py), where
each has its public source.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

# Codes of status_details.error (and of error bodies) that mean "too many requests, try later":
# `inference_rate_limit_exceeded` (openai/openai-python#2502), `rate_limit_exceeded` (the REST API's).
RATE_LIMIT_CODES = frozenset({"inference_rate_limit_exceeded", "rate_limit_exceeded"})
QUOTA_CODES = frozenset({"insufficient_quota"})
MODEL_CODES = frozenset({"model_not_found"})
AUTH_CODES = frozenset({"invalid_api_key"})


@dataclass(frozen=True)
class UpstreamFailure:
    """One kind of failure: what the learner is told, what the session records, whether to retry."""

    kind: str  # auth | busy | silent | quota | model | error
    code: str  # the learner-facing error code (README "JSON from the server")
    message: str  # Parla's words for the learner
    end_reason: str  # TutorSession.EndReason when the session ends of it
    retry: bool = False  # a failed response of this kind is worth retrying


AUTH = UpstreamFailure(
    "auth",
    "upstream_auth",
    "The tutor service did not accept Parla's access key, so the session could not start. "
    "Please tell your teacher: the key needs to be checked.",
    "upstream_auth",
)
BUSY = UpstreamFailure(
    "busy",
    "upstream_busy",
    "The tutor service is too busy right now. Please try again in a minute.",
    "upstream_busy",
    retry=True,
)
SILENT = UpstreamFailure(
    "silent",
    "upstream_silent",
    "The tutor service stopped answering and could not be reached again, so the session has ended. "
    "Your answers so far are kept.",
    "upstream_error",
)
QUOTA = UpstreamFailure(
    "quota",
    "upstream_quota",
    "The tutor service has run out of quota for Parla, so the session has ended. Your answers so far "
    "are kept and assessed. Please tell your teacher.",
    "upstream_quota",
)
MODEL = UpstreamFailure(
    "model",
    "upstream_model",
    "Parla is not allowed to use its tutor model on this service, so the session has ended. Your answers "
    "so far are kept and assessed. Please tell your teacher.",
    "upstream_model",
)
ERROR = UpstreamFailure(
    "error",
    "upstream_error",
    "The tutor service had a problem and the session has ended. Your answers so far are kept. "
    "Please try again in a minute.",
    "upstream_error",
    retry=True,
)

# An upstream `error` no request of Parla's was waiting for (it is logged with its own text).
UNCLAIMED_ERROR_MESSAGE = "The tutor service reported a problem with the last step; the session goes on."


def refused_at_upgrade(status: int, code: str | None) -> UpstreamFailure:
    """An HTTP status instead of the websocket upgrade (`code` from the JSON body, if any)."""
    if code in QUOTA_CODES:
        return QUOTA
    if status in (401, 403) or code in AUTH_CODES:
        return AUTH
    if status == 429 or status >= 500:
        return BUSY
    return ERROR


def refused_in_band(code: str | None) -> UpstreamFailure:
    """An `error` event, then the close, before the session was created."""
    return _by_code(code) or ERROR


def failed_response(code: str | None, error_type: str | None) -> UpstreamFailure:
    """A `response.done` with status `failed` and this `status_details.error`."""
    found = _by_code(code) or _by_code(error_type)
    if found is not None:
        return found
    return ERROR  # server_error and anything unknown: retried, then the session ends


def fatal_error(code: str | None, error_type: str | None) -> UpstreamFailure | None:
    """An `error` event mid-session that ends it (a key revoked, quota spent, model access withdrawn):
    retrying cannot help, so the session ends with what is known (issue 25). None for the errors a
    session lives on after (a refused client event, a rate limit, a server error)."""
    found = _by_code(code) or _by_code(error_type)
    return found if found is not None and found.kind in ("auth", "quota", "model") else None


def _by_code(code: str | None) -> UpstreamFailure | None:
    if code in RATE_LIMIT_CODES:
        return BUSY
    if code in QUOTA_CODES:
        return QUOTA
    if code in MODEL_CODES:
        return MODEL
    if code in AUTH_CODES:
        return AUTH
    return None


# "Please try again in 1m26.4s." / "in 20ms" / "in 7s" (the REST API's rate-limit wording; a realtime
# example: community.openai.com/t/about-gpt-realtime-rate-limit/1375342).
_TRY_AGAIN = re.compile(r"try again in (?:(\d+)h)?(?:(\d+)m(?!s))?(?:([\d.]+)(ms|s))?", re.IGNORECASE)


def reset_from_message(message: str | None) -> float | None:
    """Seconds an error message asks to wait ("Please try again in 1m26.4s."), or None."""
    match = _TRY_AGAIN.search(message or "")
    if match is None or not any(match.group(1, 2, 3)):
        return None
    hours, minutes, amount, unit = match.groups()
    seconds = int(hours or 0) * 3600 + int(minutes or 0) * 60
    if amount:
        seconds += float(amount) / (1000 if unit.lower() == "ms" else 1)
    return seconds


@dataclass
class RateLimits:
    """The latest `rate_limits.updated`: when each exhausted limit resets (on the caller's clock)."""

    resets_at: dict[str, float] = field(default_factory=dict)  # name -> clock time of its reset

    def update(self, limits: list, now: float) -> None:
        """`limits`: the event's `rate_limits` (objects with name, remaining, reset_seconds)."""
        for limit in limits:
            name = limit.name or "unknown"
            if limit.remaining == 0 and limit.reset_seconds:
                self.resets_at[name] = now + limit.reset_seconds
            else:
                self.resets_at.pop(name, None)

    def wait(self, now: float) -> float:
        """Seconds until every exhausted limit has reset (0 when none is exhausted)."""
        return max([0.0, *(at - now for at in self.resets_at.values())])


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded backoff for failed responses: 0.5, 1, 2, 4 s (or longer when the API asks, up to
    `max_delay`), `max_attempts` retries in a row; after that the failure persists."""

    base_delay: float = 0.5
    max_delay: float = 20.0
    max_attempts: int = 4

    def delay(self, attempt: int, asked: float | None = None) -> float:
        """Seconds before retry number `attempt` (1-based); `asked` is what the API asked for."""
        backoff = self.base_delay * 2 ** (attempt - 1)
        return min(self.max_delay, max(backoff, asked or 0.0))

    def gives_up(self, attempt: int) -> bool:
        return attempt > self.max_attempts
