"""Audio for the simulator: voice synthesis, energy VAD and voice recognition (numpy, no I/O).

All audio is PCM16 little-endian mono at 24 kHz, the Realtime API's `audio/pcm` format.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass, field

import numpy as np

from tutor.realtime.audio import BYTES_PER_MS, BYTES_PER_SAMPLE, FULL_SCALE, SAMPLE_DTYPE, SAMPLE_RATE, samples_in

MS_PER_CHAR = 65  # synthesized speech length per transcript character at speed 1.0

# Each built-in voice speaks at its own fundamental frequency (20 Hz apart) with its own
# harmonic roll-off, so two voices are told apart by ear and by `estimate_voice`.
VOICE_F0_HZ: dict[str, float] = {
    "ash": 95.0,
    "echo": 115.0,
    "cedar": 135.0,
    "verse": 155.0,
    "alloy": 175.0,
    "ballad": 195.0,
    "sage": 215.0,
    "coral": 235.0,
    "marin": 255.0,
    "shimmer": 275.0,
}
_ROLLOFF = {name: 0.9 + 0.15 * i for i, name in enumerate(VOICE_F0_HZ)}  # timbre: darker -> brighter
_MIN_F0, _MAX_F0 = 60.0, 400.0


def voice_key(voice: object) -> str:
    """A voice setting (name, or a custom `{"id": ...}` object) as a string."""
    if isinstance(voice, dict):
        return str(voice.get("id", ""))
    return str(voice)


def voice_f0(voice: object) -> float:
    """Fundamental frequency for a voice; unknown/custom voices get a stable in-range pitch."""
    key = voice_key(voice)
    if key in VOICE_F0_HZ:
        return VOICE_F0_HZ[key]
    return 90.0 + (zlib.crc32(key.encode()) % 200)


def speech_ms(text: str, speed: float = 1.0) -> int:
    """How long the synthesized `text` lasts, at the session's output `speed` (0.25-1.5)."""
    return max(200, round(len(text) * MS_PER_CHAR / max(speed, 0.25)))


class SpeechAudio:
    """`ms` of voiced, syllable-modulated speech-like audio for `text` in `voice`, made chunk by chunk.

    Every sample has a closed form (phase of the gently rising and falling pitch, syllable envelope),
    so chunk `i` is computed when it is streamed: the first audio delta does not wait for the whole
    utterance to be synthesized, as with a real model, whose audio starts while it still speaks.
    """

    def __init__(self, text: str, voice: object, ms: int, chunk_ms: int = 100) -> None:
        self.n = max(1, samples_in(ms))
        self.step = max(1, samples_in(chunk_ms))
        self.ms = ms
        self.f0 = voice_f0(voice)
        self.offset = (zlib.crc32(text.encode("utf-8")) % 628) / 100.0
        self.syllables = _syllable_count(text)
        self.weights = np.arange(1, 1 + int(4000 // self.f0)) ** -_ROLLOFF.get(voice_key(voice), 1.2)
        # Peak of one period of the harmonic sum: the waveform is normalized by it, as one piece.
        theta = np.linspace(0, 2 * np.pi, 4096, endpoint=False)
        self.peak = float(np.max(np.abs(self._harmonics(theta))))

    def __len__(self) -> int:
        return -(-self.n // self.step)

    def _harmonics(self, phase: np.ndarray) -> np.ndarray:
        k = np.arange(1, len(self.weights) + 1)
        return np.sin(np.outer(phase, k)) @ self.weights

    def chunk(self, index: int) -> bytes:
        i = np.arange(index * self.step, min(self.n, (index + 1) * self.step))
        t = i / SAMPLE_RATE
        # Gentle intonation (+-2 %) keeps the pitch recognisable; its phase is the contour's integral.
        w = 2 * np.pi * 0.6
        phase = 2 * np.pi * self.f0 * (t - 0.02 / w * (np.cos(w * t + self.offset) - np.cos(self.offset)))
        # One amplitude bump per syllable (vowel groups of the text), never fully silent.
        position = t * 1000 / self.ms * self.syllables
        envelope = 0.35 + 0.65 * np.sin(np.pi * (position % 1.0)) ** 2
        fade = np.minimum(1.0, np.minimum(i, self.n - 1 - i) / (0.01 * SAMPLE_RATE))
        signal = self._harmonics(phase) / self.peak * envelope * fade * 0.3
        return (signal * (FULL_SCALE - 1)).astype(SAMPLE_DTYPE).tobytes()


def synthesize(text: str, voice: object, ms: int) -> bytes:
    """The whole of `SpeechAudio(text, voice, ms)` as PCM16."""
    audio = SpeechAudio(text, voice, ms)
    return b"".join(audio.chunk(i) for i in range(len(audio)))


_VOWELS = frozenset("aeiouyáéíóúàèìòùâêîôûäöü")


def _syllable_count(text: str) -> int:
    """Vowel groups in `text` (at least one): a rough syllable count that drives the envelope."""
    count, previous = 0, False
    for char in text.lower():
        vowel = char in _VOWELS
        count += vowel and not previous
        previous = vowel
    return max(1, count)


def silence(ms: int) -> bytes:
    return bytes(samples_in(ms) * BYTES_PER_SAMPLE)


def _samples(pcm: bytes | bytearray) -> np.ndarray:
    usable = len(pcm) - len(pcm) % BYTES_PER_SAMPLE
    return np.frombuffer(bytes(pcm[:usable]), dtype=SAMPLE_DTYPE).astype(np.float64) / FULL_SCALE


def estimate_pitch(pcm: bytes | bytearray) -> float:
    """Fundamental frequency (Hz) of a voiced chunk (>= 200 ms), by FFT autocorrelation."""
    x = _samples(pcm)
    x = x - x.mean()
    n = len(x)
    if n < SAMPLE_RATE // 50:
        raise ValueError("need at least 20 ms of audio to estimate a pitch")
    spectrum = np.fft.rfft(x, 2 * n)
    corr = np.fft.irfft(spectrum * np.conj(spectrum))[:n]
    lo, hi = int(SAMPLE_RATE / _MAX_F0), min(n - 2, int(SAMPLE_RATE / _MIN_F0))
    lag = lo + int(np.argmax(corr[lo:hi]))
    # Parabolic interpolation around the peak for sub-sample precision.
    a, b, c = corr[lag - 1], corr[lag], corr[lag + 1]
    denom = a - 2 * b + c
    shift = 0.5 * (a - c) / denom if denom else 0.0
    return SAMPLE_RATE / (lag + shift)


def estimate_voice(pcm: bytes | bytearray) -> str:
    """The built-in voice whose synthesized pitch is closest to that of `pcm`."""
    pitch = estimate_pitch(pcm)
    return min(VOICE_F0_HZ, key=lambda name: abs(VOICE_F0_HZ[name] - pitch))


# --- Energy VAD ------------------------------------------------------------------------------

VAD_FRAME_MS = 10
_FRAME_BYTES = VAD_FRAME_MS * BYTES_PER_MS
_ONSET_FRAMES = 3  # 30 ms above threshold before speech counts (a click is not speech)


def threshold_dbfs(threshold: float) -> float:
    """Map the API's VAD `threshold` (0..1, default 0.5) to an RMS level: 0.5 -> -35 dBFS."""
    return -60.0 + 50.0 * min(max(threshold, 0.0), 1.0)


def frame_dbfs(pcm: bytes | bytearray) -> float:
    x = _samples(pcm)
    if not len(x):
        return -math.inf
    rms = float(np.sqrt(np.mean(x * x)))
    return 20 * math.log10(rms) if rms > 0 else -math.inf


def voiced_ms(pcm: bytes | bytearray, threshold: float = 0.5) -> int:
    """Milliseconds of `pcm` whose 10 ms frames are above the VAD level for `threshold`."""
    level = threshold_dbfs(threshold)
    frames = range(0, len(pcm) - _FRAME_BYTES + 1, _FRAME_BYTES)
    return VAD_FRAME_MS * sum(frame_dbfs(pcm[i : i + _FRAME_BYTES]) >= level for i in frames)


@dataclass(frozen=True)
class VadEvent:
    kind: str  # "speech_started" | "speech_stopped"
    audio_ms: int  # start: onset minus prefix padding; stop: end of the trailing silence


@dataclass
class EnergyVad:
    """Server VAD on PCM energy; positions are ms of all audio fed during the session."""

    threshold: float = 0.5
    prefix_padding_ms: int = 300
    silence_duration_ms: int = 500
    position_ms: int = 0
    speaking: bool = False
    _pending: bytearray = field(default_factory=bytearray)
    _run: int = 0  # consecutive voiced frames while not speaking
    _last_voice_ms: int = 0

    def reset(self) -> None:
        """Forget speech in progress (after a commit or clear); keeps the session clock."""
        self.speaking = False
        self._run = 0
        self._pending.clear()

    def feed(self, pcm: bytes) -> list[VadEvent]:
        self._pending.extend(pcm)
        level = threshold_dbfs(self.threshold)
        events: list[VadEvent] = []
        while len(self._pending) >= _FRAME_BYTES:
            frame = self._pending[:_FRAME_BYTES]
            del self._pending[:_FRAME_BYTES]
            start = self.position_ms
            self.position_ms += VAD_FRAME_MS
            voiced = frame_dbfs(frame) >= level
            if not self.speaking:
                self._run = self._run + 1 if voiced else 0
                if self._run >= _ONSET_FRAMES:
                    self.speaking = True
                    onset_ms = start - (_ONSET_FRAMES - 1) * VAD_FRAME_MS
                    self._last_voice_ms = self.position_ms
                    events.append(VadEvent("speech_started", max(0, onset_ms - self.prefix_padding_ms)))
            elif voiced:
                self._last_voice_ms = self.position_ms
            elif self.position_ms - self._last_voice_ms >= self.silence_duration_ms:
                self.speaking = False
                self._run = 0
                events.append(VadEvent("speech_stopped", self.position_ms))
        return events
