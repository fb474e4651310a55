"""The languages Parla places learners in, and speaks to them in: one list, code -> English name (pure).

The `Language` choices of the models, the tutor's instructions and the grader's prompt all read it.
"""

import re

LANGUAGES: dict[str, str] = {
    "es": "Spanish",
    "fr": "French",
    "de": "German",
    "it": "Italian",
    "en": "English",
    "pt": "Portuguese",
}


def language_name(code: str) -> str:
    """English name of an ISO 639-1 code (the code itself if unknown); ValueError if malformed."""
    # The code lands on a marker line the simulator parses: no spaces or newlines may slip in.
    if not isinstance(code, str) or not re.fullmatch(r"[a-z]{2,3}", code):
        raise ValueError(f"invalid language code {code!r}: expected an ISO 639-1 code such as 'es'")
    return LANGUAGES.get(code, code)
