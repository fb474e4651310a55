"""How generated output is cut into deltas (audio chunks, text pieces) and paced."""

from __future__ import annotations

AUDIO_CHUNK_MS = 100  # audio per response.output_audio.delta


def chunk_interval(pace: float) -> float:
    """Seconds between audio deltas: `pace` is a speed (1.0 real time, 2.0 twice as fast, 0 no wait)."""
    return AUDIO_CHUNK_MS / 1000 / pace if pace > 0 else 0.0


def split_text(text: str, parts: int) -> list[str]:
    """`text` cut at word boundaries into `parts` pieces (some may be empty) that join back to it."""
    parts = max(1, parts)
    words = text.split(" ")
    tokens = [w + " " for w in words[:-1]] + [words[-1]]
    pieces = [""] * parts
    for index, token in enumerate(tokens):
        pieces[min(parts - 1, index * parts // len(tokens))] += token
    return pieces
