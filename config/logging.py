"""Structured log lines: the message says what happened, `extra` fields carry the ids.

No credential reaches a log line: an upstream may echo what it was sent (an error text quoting the
`Authorization` header), and that text is logged for the operator. The formatter masks, in the whole
line (message, fields and traceback), this server's own API key whatever its shape, and anything shaped
like an OpenAI key or a bearer token.
"""

import json
import logging
import re

# Attributes every LogRecord has; anything else on a record came from `extra=`.
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}

MASK = "[masked]"
# OpenAI keys: "sk-" then letters, digits, "-" and "_" (sk-proj-..., sk-svcacct-...); the API's own error
# texts already show them cut ("sk-abc*****wxyz"), which this leaves alone.
_CREDENTIALS = re.compile(r"\bsk-[A-Za-z0-9_\-]{8,}|(?<=Bearer )[^\s\"'\\,;]+", re.IGNORECASE)


def mask_credentials(text: str, secrets: tuple[str, ...] = ()) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, MASK)
    return _CREDENTIALS.sub(MASK, text)


def _configured_secrets() -> tuple[str, ...]:
    """The credentials this process holds (read once settings are loaded; none before)."""
    from django.conf import settings

    try:
        return tuple(s for s in (getattr(settings, "OPENAI_API_KEY", ""),) if len(s) >= 8)
    except Exception:  # settings not configured (a bare script): only the shapes are masked
        return ()


class StructuredFormatter(logging.Formatter):
    """`time level logger message key=value ...` with the `extra` fields as sorted key=value pairs,
    credentials masked."""

    def format(self, record: logging.LogRecord) -> str:
        fields = {k: v for k, v in vars(record).items() if k not in _STANDARD}
        line = f"{self.formatTime(record)} {record.levelname} {record.name} {record.getMessage()}"
        if fields:
            line += " " + " ".join(f"{k}={json.dumps(v, default=str)}" for k, v in sorted(fields.items()))
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return mask_credentials(line, _configured_secrets())
