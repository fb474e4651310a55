"""The one audio format of Parla, the browser and the Realtime API: PCM16 little endian, mono, 24 kHz.

The API calls it `audio/pcm` (rate 24000); the browser's worklets use the same numbers
(static/tutor/protocol.js). Everything in Python that sizes or converts audio reads it here; the
numbers themselves are defined once in assessments/audio.py (pure, no Django), which the learner-audio
WAV writer reads too.
"""

from assessments.audio import BYTES_PER_SAMPLE, CHANNELS, SAMPLE_RATE

__all__ = ["API_FORMAT", "BYTES_PER_MS", "BYTES_PER_SAMPLE", "CHANNELS", "SAMPLE_RATE", "audio_ms", "pcm_ms"]

BYTES_PER_MS = SAMPLE_RATE * BYTES_PER_SAMPLE * CHANNELS // 1000  # 48
SAMPLE_DTYPE = "<i2"  # numpy's name for one sample: signed 16-bit little endian
FULL_SCALE = 1 << (8 * BYTES_PER_SAMPLE - 1)  # 32768: a sample's magnitude at 0 dBFS

# The session config's audio format object (`audio.input.format` / `audio.output.format`).
API_FORMAT = {"type": "audio/pcm", "rate": SAMPLE_RATE}


def audio_ms(num_bytes: int) -> int:
    """Whole milliseconds of audio in `num_bytes` bytes."""
    return num_bytes // BYTES_PER_MS


def samples_in(ms: float) -> int:
    """Whole samples in `ms` milliseconds of audio."""
    return int(ms * SAMPLE_RATE / 1000)


def pcm_ms(pcm: bytes | bytearray | int) -> float:
    """Duration in ms of audio (bytes or a byte count), with fractions."""
    size = pcm if isinstance(pcm, int) else len(pcm)
    return size / BYTES_PER_MS
