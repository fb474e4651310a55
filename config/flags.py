"""How Parla reads a yes/no word (settings from the environment, simulator knobs from a query string).

Pure, with no Django, so the realtime layer can use it too.
"""

TRUE_WORDS = frozenset({"1", "true", "yes", "on"})
FALSE_WORDS = frozenset({"0", "false", "no", "off"})
WORDS = "1/0, true/false, yes/no, on/off"


def parse_bool(raw: str) -> bool:
    """True or False for one of WORDS (any case, spaces around ignored); ValueError otherwise."""
    value = raw.strip().lower()
    if value in TRUE_WORDS:
        return True
    if value in FALSE_WORDS:
        return False
    raise ValueError(f"expected one of {WORDS}; got {raw!r}")
