"""How a learner's words are quoted as evidence: one way, everywhere (pure).

A quote is the learner's own words, whitespace normalised, cut at a word boundary with an ellipsis when
too long, inside one pair of curly quotation marks. Whatever quoted them first (the rater, a grader, a
model that added its own marks), `quote` gives the same text: marks already around the words are taken
off before the one pair is put on, so no page shows them doubled. Displays show evidence as stored and
add no marks of their own.
"""

from __future__ import annotations

OPEN, CLOSE, ELLIPSIS = "\u201c", "\u201d", "\u2026"
_MARKS = "\"'\u201c\u201d\u201e\u00ab\u00bb\u2018\u2019 "
QUOTE_CHARS = 160


def bare(text: str) -> str:
    """The words inside any quotation marks around them, whitespace normalised."""
    text = " ".join(str(text).split())
    while len(text) >= 2 and text[0] in _MARKS and text[-1] in _MARKS:
        text = text[1:-1].strip()
    return text


def shorten(text: str, limit: int = QUOTE_CHARS) -> str:
    """`text` (normalised) cut at the last word boundary so that, with the ellipsis, it holds at most
    `limit` characters (so shortening a shortened quote changes nothing). A first word longer than
    the limit is cut inside it (rather than quoting nothing)."""
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    head = text[:limit]  # the ellipsis takes the last place
    cut = head.rsplit(" ", 1)[0] if " " in head else text[: limit - 1]
    return cut.rstrip(",;:.-\u2013\u2014 ") + ELLIPSIS


def quote(text: str, limit: int = QUOTE_CHARS) -> str:
    """The learner's words as evidence: shortened at a word boundary, in one pair of quotation marks."""
    words = bare(text)
    return f"{OPEN}{shorten(words, limit)}{CLOSE}" if words else ""


def is_quote(evidence: str) -> bool:
    """Whether `evidence` is a quote (as `quote` makes them) rather than a measure."""
    evidence = evidence.strip()
    return evidence.startswith(OPEN) and evidence.endswith(CLOSE)
