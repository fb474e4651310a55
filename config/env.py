"""Typed readers for environment variables (the settings module's only source of configuration)."""

import os

from django.core.exceptions import ImproperlyConfigured

from config.flags import WORDS, parse_bool



def env(name: str, default: str) -> str:
    return os.environ.get(name, default)


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None:
        return default
    if not raw.strip():
        return False  # set but empty: off
    try:
        return parse_bool(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be one of {WORDS}; got {raw!r}.") from None


def _number(name: str, default, kind):
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return kind(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a {kind.__name__}; got {raw!r}.") from None


def env_int(name: str, default: int) -> int:
    return _number(name, default, int)


def env_float(name: str, default: float) -> float:
    return _number(name, default, float)


def env_list(name: str, default: list[str]) -> list[str]:
    raw = os.environ.get(name)
    if raw is None:
        return default
    return [part.strip() for part in raw.split(",") if part.strip()]
