"""Helpers for the operations tests (metrics, health, drain, the proxy): plain HTTP to a live server and
its metrics port, read with prometheus-client's own parser."""

from __future__ import annotations

import time
import urllib.error
import urllib.request

from prometheus_client.parser import text_string_to_metric_families


def http_get(url: str, timeout: float = 5.0) -> tuple[int, str]:
    """(status, body) of a GET; an HTTP error status is an answer, not an exception."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def scrape(port: int) -> dict[tuple[str, tuple], float]:
    """Every sample of a process's metrics: (name, sorted labels) -> value."""
    status, text = http_get(f"http://127.0.0.1:{port}/metrics")
    assert status == 200, text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def sample(samples: dict, name: str, **labels) -> float:
    """One sample's value, 0 when the series does not exist yet (a label value never seen)."""
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def wait_for(condition, timeout: float, what: str, interval: float = 0.05):
    """Poll `condition` until it is true (returns its value) or fail after `timeout` saying `what`."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)
