"""How generated output is cut into deltas (audio chunks, text pieces) and paced."""

from __future__ import annotations

AUDIO_CHUNK_MS = 100  # audio per response.output_audio.delta
# The transcript of a response runs ahead of its audio, as the API's does: its text pieces go out this
# many times faster than the audio chunks, so the whole transcript is out when the audio is halfway.
TRANSCRIPT_LEAD = 2


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


def transcript_ahead(pieces: list[str], chunk: int) -> list[str]:
    """The transcript pieces sent with audio chunk `chunk` (of `len(pieces)` chunks): TRANSCRIPT_LEAD
    pieces per chunk, so that the text leads the audio."""
    return pieces[chunk * TRANSCRIPT_LEAD : (chunk + 1) * TRANSCRIPT_LEAD]
