"""The load benchmark's upstream: the bundled simulator in a process of its own, instrumented.

    .venv/bin/python bench/load_sim.py --port 8765 --stats /tmp/sim-1.json [--reuse-port] [--pace 1]

Started by bench/load.py (one or several processes on one port with SO_REUSEPORT: the kernel spreads
the connections). It is the simulator of this checkout with three changes made here, at launch, and
nowhere else (each one a cost of the simulator, not of Parla):

- every tutor audio chunk carries a stamp (bench/load_stamp.py): the moment the simulator emits the
  delta, and the chunk's index in its item;
- the chunks are cut from one pre-synthesized 100 ms chunk per voice instead of being synthesized as
  they stream (the cheap audio path: hundreds of sessions at real-time pace would otherwise spend the
  simulator's CPU on numpy synthesis, and the benchmark would measure the simulator);
- the VAD's levels of the 10 ms frames of each append are computed in one numpy pass (same values,
  same decisions), and ids are drawn with one call instead of 21;
- every appended input audio frame's stamp is read: learner audio latency, loss and reordering per
  client, written to `--stats` as JSON when the process is stopped (SIGTERM or SIGINT).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Annotated, Any, get_args

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
from pydantic import Field, TypeAdapter  # noqa: E402
from websockets.asyncio.server import serve  # noqa: E402

from load_stamp import STAMP_SAMPLES, Sequence, StreamStamps, split_tag, stamp  # noqa: E402
from tutor.realtime.simulator import RealtimeSimulator, SimulatorKnobs  # noqa: E402
from tutor.realtime.simulator import events as sim_events  # noqa: E402
from tutor.realtime.simulator import input as sim_input  # noqa: E402
from tutor.realtime.simulator import responses as sim_responses  # noqa: E402
from tutor.realtime.simulator import audio as sim_audio  # noqa: E402
from tutor.realtime.simulator.audio import SpeechAudio  # noqa: E402

TUTOR_TAG = 0x7070  # the tag of every tutor audio stamp; the item is the one the receiver was told

# --- tutor audio: cheap, stamped -----------------------------------------------------------------

_voice_chunks: dict[str, np.ndarray] = {}


def _voice_chunk(voice: object) -> np.ndarray:
    key = str(voice)
    if key not in _voice_chunks:
        pcm = SpeechAudio("a e i o u", voice, 1000).chunk(3)  # 100 ms from the middle of a word
        _voice_chunks[key] = np.frombuffer(pcm, dtype="<i2").copy()
    return _voice_chunks[key]


class StampedSpeech:
    """Stands in for simulator.audio.SpeechAudio: same length and chunking, each chunk stamped when
    it is made (just before the delta is emitted)."""

    def __init__(self, text: str, voice: object, ms: int, chunk_ms: int = 100) -> None:
        self.n = max(1, ms * 24)
        self.step = max(1, chunk_ms * 24)
        self.base = _voice_chunk(voice)

    def __len__(self) -> int:
        return -(-self.n // self.step)

    def chunk(self, index: int) -> bytes:
        size = min(self.step, self.n - index * self.step)
        samples = np.resize(self.base, size) if size != len(self.base) else self.base.copy()
        if size >= STAMP_SAMPLES:
            stamp(samples, TUTOR_TAG, index)
        return samples.tobytes()


# --- learner audio: stamps read on arrival --------------------------------------------------------


class LearnerStats:
    """Latency and sequence of every stamped input frame, by phase (from the tag)."""

    def __init__(self) -> None:
        self.latency_ms: dict[int, list[float]] = defaultdict(list)
        self.sequences: dict[int, Sequence] = defaultdict(Sequence)
        self.unreadable = 0
        self.frames = 0

    def feed(self, stream: StreamStamps, pcm: bytes) -> None:
        now = time.monotonic_ns()
        before = stream.unreadable
        for tag, seq, t_ns in stream.feed(pcm):
            phase, _client = split_tag(tag)
            self.frames += 1
            self.latency_ms[phase].append(round((now - t_ns) / 1e6, 3))
            self.sequences[tag].add(seq)
        self.unreadable += stream.unreadable - before

    def as_json(self) -> dict[str, Any]:
        by_phase: dict[int, dict[str, Any]] = {}
        for phase, values in self.latency_ms.items():
            by_phase[phase] = {"latency_ms": values, "received": 0, "lost": 0, "reordered": 0, "clients": 0}
        for tag, sequence in self.sequences.items():
            phase, _client = split_tag(tag)
            entry = by_phase.setdefault(phase, {"latency_ms": [], "received": 0, "lost": 0, "reordered": 0, "clients": 0})
            entry["received"] += sequence.received
            entry["lost"] += sequence.lost()
            entry["reordered"] += sequence.reordered
            entry["clients"] += 1
        return {"phases": {str(k): v for k, v in by_phase.items()}, "unreadable": self.unreadable, "frames": self.frames}


STATS = LearnerStats()


def _instrument_input() -> None:
    original = sim_input.InputAudio.append_pcm

    def append_pcm(self, pcm):
        stream = self.__dict__.get("_bench_stream")
        if stream is None:
            stream = self.__dict__["_bench_stream"] = StreamStamps()
        STATS.feed(stream, pcm)
        return original(self, pcm)

    sim_input.InputAudio.append_pcm = append_pcm


def _cheap_parse() -> None:
    """Client events parsed through the `openai` union discriminated on `type` (the same models, a
    direct dispatch instead of trying every member): the simulator's parse is then not what limits it."""
    union = get_args(sim_events.RealtimeClientEvent)[0]
    sim_events.CLIENT_EVENT_ADAPTER = TypeAdapter(Annotated[union, Field(discriminator="type")])


_original_feed = sim_audio.EnergyVad.feed
_FRAME_BYTES = sim_audio.VAD_FRAME_MS * 48


def _levels(pcm: bytes) -> list[float]:
    """simulator.audio.frame_dbfs of every 10 ms frame of `pcm`, in one numpy pass (same values)."""
    x = np.frombuffer(pcm, dtype="<i2").astype(np.float64).reshape(-1, _FRAME_BYTES // 2)
    mean_square = np.einsum("ij,ij->i", x, x) / x.shape[1] / (sim_audio.FULL_SCALE * sim_audio.FULL_SCALE)
    with np.errstate(divide="ignore"):
        return (10 * np.log10(mean_square)).tolist()  # 0 -> -inf, as frame_dbfs


def _vectorized_feed(self, pcm: bytes):
    """EnergyVad.feed, its frame levels computed at once: the simulator's own loop runs unchanged,
    reading each level from the precomputed list instead of computing it frame by frame."""
    whole = (len(self._pending) + len(pcm)) // _FRAME_BYTES * _FRAME_BYTES
    if not whole:
        return _original_feed(self, pcm)
    levels = iter(_levels((bytes(self._pending) + bytes(pcm))[:whole]))
    computed = sim_audio.frame_dbfs
    sim_audio.frame_dbfs = lambda _frame: next(levels)  # feed is synchronous: nothing else runs meanwhile
    try:
        return _original_feed(self, pcm)
    finally:
        sim_audio.frame_dbfs = computed


def _vectorized_voiced_ms(pcm: bytes | bytearray, threshold: float = 0.5) -> int:
    """simulator.audio.voiced_ms (the voiced length of a committed answer) in one numpy pass."""
    whole = len(pcm) // _FRAME_BYTES * _FRAME_BYTES
    if not whole:
        return 0
    level = sim_audio.threshold_dbfs(threshold)
    return sim_audio.VAD_FRAME_MS * sum(value >= level for value in _levels(bytes(pcm[:whole])))


def _cheap_ids() -> None:
    """Ids drawn with one `choices` call instead of 21 `choice` calls (same alphabet and length)."""
    alphabet = sim_events.IdFactory._ALPHABET

    def new(self, prefix: str) -> str:
        return prefix + "_" + "".join(self._rng.choices(alphabet, k=21))

    sim_events.IdFactory.new = new


def instrument() -> None:
    sim_responses.SpeechAudio = StampedSpeech
    sim_audio.EnergyVad.feed = _vectorized_feed
    sim_input.voiced_ms = _vectorized_voiced_ms  # input.py imported it by name
    _cheap_ids()
    _instrument_input()
    _cheap_parse()


class SharedPortSimulator(RealtimeSimulator):
    """The simulator listening with SO_REUSEPORT, so several processes share one port."""

    async def start(self) -> "SharedPortSimulator":
        self._server = await serve(
            self._handle,
            self.host,
            self._requested_port,
            process_request=self._check_request,
            max_size=self.knobs.max_message_bytes,
            reuse_port=True,
        )
        return self


async def serve_until_stopped(simulator: RealtimeSimulator) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await simulator.start()
    print(f"listening {simulator.url}", flush=True)
    await stop.wait()
    await simulator.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--stats", required=True, help="where to write the learner-audio stamps read (JSON)")
    parser.add_argument("--reuse-port", action="store_true", help="listen with SO_REUSEPORT (several processes)")
    parser.add_argument("--pace", type=float, default=1.0, help="audio pace (1.0 = real time)")
    parser.add_argument("--audio-ms", type=int, default=None, help="audio per response (default: by text length)")
    parser.add_argument("--true-level", default="A1", help="the simulated learner's level")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    instrument()
    knobs = SimulatorKnobs(pace=args.pace, audio_ms_per_response=args.audio_ms, true_level=args.true_level, seed=args.seed)
    cls = SharedPortSimulator if args.reuse_port else RealtimeSimulator
    simulator = cls(knobs=knobs, host="127.0.0.1", port=args.port)
    try:
        asyncio.run(serve_until_stopped(simulator))
    finally:
        Path(args.stats).write_text(json.dumps(STATS.as_json()))


if __name__ == "__main__":
    main()
