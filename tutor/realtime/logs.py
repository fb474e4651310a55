"""Structured logs with ids bound once: `log = bind(logger, session_id=7)`, then `log.info("voice switched")`.

Every record carries the bound ids in its `extra` (the formatter in config/logging.py prints them);
ids known only later are added with `log.bind(assessment_id=...)`. Call-site `extra` wins on a clash.
"""

from __future__ import annotations

import logging
from typing import Any


class BoundLogger(logging.LoggerAdapter):
    def __init__(self, logger: logging.Logger, **ids: Any):
        super().__init__(logger, dict(ids))

    def bind(self, **ids: Any) -> None:
        """Add (or change) ids carried by every later record."""
        self.extra.update(ids)

    def process(self, msg, kwargs):
        kwargs["extra"] = {**self.extra, **(kwargs.get("extra") or {})}
        return msg, kwargs


def bind(logger: logging.Logger, **ids: Any) -> BoundLogger:
    return BoundLogger(logger, **ids)
