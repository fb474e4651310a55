"""CEFR levels: the ordered scale every other part of Parla refers to (pure, no Django)."""

LEVELS: tuple[str, ...] = ("A1", "A2", "B1", "B2", "C1", "C2")

LEVEL_NAMES = {
    "A1": "Breakthrough",
    "A2": "Waystage",
    "B1": "Threshold",
    "B2": "Vantage",
    "C1": "Effective operational proficiency",
    "C2": "Mastery",
}


def level_index(level: str) -> int:
    """Position of `level` on the scale (A1 = 0); ValueError for anything else."""
    try:
        return LEVELS.index(level)
    except ValueError:
        raise ValueError(f"unknown CEFR level {level!r}; expected one of {', '.join(LEVELS)}") from None


def next_level(level: str) -> str | None:
    """The level above `level`, or None at the top."""
    i = level_index(level)
    return LEVELS[i + 1] if i + 1 < len(LEVELS) else None
