"""The load benchmark's learners: N websocket clients in one asyncio process, driven in real time.

    .venv/bin/python bench/load_driver.py PLAN.json RESULT.json

Started by bench/load.py, in a process of its own (so its CPU is not the server's). `PLAN.json` says
where to connect and how many learners; each learner behaves like the tutor page:

- `parla` mode: opens `/ws/tutor/` with its session cookie and the page's Origin, sends
  `session.start`, then streams a 100 ms microphone frame (PCM16 mono 24 kHz) every 100 ms of wall
  clock, except in the states where the page pauses the microphone (assessing, summary, ended). It
  plays the tutor's audio on a virtual speaker in real time; once a tutor item has played to its end
  it answers out loud (2-4 s of voiced frames, then silence, at least 1.5 s before it speaks again)
  and types the answer as it stops speaking (demo mode places no spoken answer without words),
  answers every `playback.flush` with `playback.flushed` (the item playing and the ms played), and
  sends `playback.report` every 500 ms of an item and when it played to its end. It stops at `state:
  ended`.
- `direct` mode (the baseline): the same learner on a socket straight to the simulator, speaking the
  Realtime protocol the way Parla does (the same `session.update` from tutor.persona, the greeting's
  `response.create`, every `record_probe` call answered), for a fixed time.

Every frame carries a stamp (bench/load_stamp.py): the learner's frames are read by the simulator, the
tutor's by this process. The result holds raw samples (ms) and counts.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from websockets.asyncio.client import connect  # noqa: E402
from websockets.exceptions import ConnectionClosed, InvalidStatus  # noqa: E402

from load_stamp import (  # noqa: E402
    FRAME_MS,
    Sequence,
    StreamStamps,
    learner_tag,
    silent_frame,
    stamped_frame,
    voiced_frame,
)

MIC_PAUSED_STATES = {"assessing", "summary", "ended"}  # static/tutor/session.js
REPORT_EVERY_MS = 500  # static/tutor/playback-worklet.js: progress every ~500 ms
THINK_S = 0.4  # silence between the end of the tutor's question and the learner's answer
VOICED = voiced_frame()
SILENT = silent_frame()
# Demo mode cannot understand speech, so a spoken answer alone places nobody (README, "The rater"):
# through Parla each answer is spoken and then typed, as a demo learner does. A beginner's sentence, so
# that placement ends at A1 after four answers (two sustained at A1, two breakdowns at A2).
WRITTEN = "Me llamo Ana. Vivo en Madrid con mi familia."


@dataclass
class Segment:
    item_id: str
    start: float
    ms: float


class Speaker:
    """The page's playback worklet, without sound: frames play in arrival order at real time."""

    def __init__(self) -> None:
        self.queue_end = 0.0  # when the queued audio has played out
        self.segments: list[Segment] = []
        self.played_cache: dict[str, float] = {}  # played ms of items no longer in `segments`
        self.ended: set[str] = set()  # audio.end received
        self.reported: dict[str, int] = {}  # item -> played ms last reported
        self.done: set[str] = set()

    def queue(self, item_id: str, ms: float, now: float) -> None:
        start = max(now, self.queue_end)
        self.queue_end = start + ms / 1000
        last = self.segments[-1] if self.segments else None
        if last and last.item_id == item_id and abs(last.start + last.ms / 1000 - start) < 1e-9:
            last.ms += ms
        else:
            self.segments.append(Segment(item_id, start, ms))

    def played_ms(self, item_id: str, now: float) -> int:
        total = self.played_cache.get(item_id, 0.0)
        for s in self.segments:
            if s.item_id == item_id:
                total += min(max(0.0, (now - s.start) * 1000), s.ms)
        return int(total)

    def playing(self, now: float) -> str | None:
        """The item playing now, or the last one that played (what the worklet calls `current`)."""
        current = None
        for s in self.segments:
            if s.start <= now:
                current = s.item_id
        return current

    def finished(self, item_id: str, now: float) -> bool:
        """The item's audio has ended and all of it has played."""
        if item_id not in self.ended:
            return False
        return all(s.start + s.ms / 1000 <= now for s in self.segments if s.item_id == item_id)

    def flush(self, now: float) -> tuple[str | None, int]:
        item = self.playing(now)
        played = self.played_ms(item, now) if item else 0
        totals = {s.item_id: self.played_ms(s.item_id, now) for s in self.segments}
        self.played_cache.update(totals)
        self.segments.clear()
        self.queue_end = now
        return item, played

    def prune(self, now: float) -> None:
        """Forget segments that played out long ago (keeps the per-tick work small)."""
        while len(self.segments) > 1 and self.segments[0].start + self.segments[0].ms / 1000 < now - 5:
            s = self.segments.pop(0)
            self.played_cache[s.item_id] = self.played_cache.get(s.item_id, 0.0) + s.ms


@dataclass
class Learner:
    index: int
    phase: int
    mode: str
    rng: random.Random
    speech_frames: tuple[int, int] = (20, 40)  # 2-4 s of speech per answer
    tutor_latency_ms: list[float] = field(default_factory=list)
    replies_ms: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    frames_sent: int = 0
    frames_received: int = 0
    tutor_lost: int = 0
    tutor_reordered: int = 0
    unreadable: int = 0
    mic_lag_ms: list[float] = field(default_factory=list)
    assessment: str | None = None
    ended: bool = False
    close_code: int | None = None
    session_s: float = 0.0
    failure: str | None = None
    # live state
    state: str = "ready"
    started: bool = False
    speaking_until: int = -1  # frames (by tick number) of the answer being spoken
    next_answer_at: float | None = None
    last_speech_end: float = 0.0
    awaiting_reply_since: float | None = None
    current_item: str | None = None
    current_role: str = "tutor"
    roles: dict[str, str] = field(default_factory=dict)
    flushed_items: set[str] = field(default_factory=set)
    streams: dict[str, StreamStamps] = field(default_factory=dict)
    sequences: dict[str, Sequence] = field(default_factory=dict)
    speaker: Speaker = field(default_factory=Speaker)
    answered: set[str] = field(default_factory=set)

    # --- what arrives ---------------------------------------------------------------------------

    def tutor_audio(self, item_id: str, pcm: bytes, now: float) -> None:
        now_ns = time.monotonic_ns()
        self.frames_received += 1
        stream = self.streams.setdefault(item_id, StreamStamps())
        sequence = self.sequences.setdefault(item_id, Sequence())
        for _tag, seq, t_ns in stream.feed(pcm):
            self.tutor_latency_ms.append(round((now_ns - t_ns) / 1e6, 3))
            sequence.add(seq)
        if self.awaiting_reply_since is not None and self.roles.get(item_id, "tutor") == "tutor":
            self.replies_ms.append(round((now - self.awaiting_reply_since) * 1000, 1))
            self.awaiting_reply_since = None
        if item_id not in self.flushed_items:
            self.speaker.queue(item_id, len(pcm) / 48, now)

    def audio_ended(self, item_id: str) -> None:
        self.speaker.ended.add(item_id)

    def finish_counts(self) -> None:
        for item_id, sequence in self.sequences.items():
            self.tutor_lost += sequence.lost(from_zero=True)
            self.tutor_reordered += sequence.reordered
        self.unreadable = sum(s.unreadable for s in self.streams.values())

    # --- the microphone and the speaker, every 100 ms ----------------------------------------------

    def tick(self, tick: int, now: float) -> tuple[bytes | None, list[dict]]:
        """The microphone frame to send now (None when the microphone is paused), and the playback
        reports that are due."""
        reports = []
        for item_id in list(self.roles):
            if item_id in self.speaker.done or item_id in self.flushed_items:
                continue
            played = self.speaker.played_ms(item_id, now)
            finished = self.speaker.finished(item_id, now)
            if finished or played - self.speaker.reported.get(item_id, 0) >= REPORT_EVERY_MS:
                self.speaker.reported[item_id] = played
                reports.append({"type": "playback.report", "item_id": item_id, "played_ms": played})
            if finished:
                self.speaker.done.add(item_id)
                if self.roles[item_id] == "tutor" and item_id not in self.answered:
                    self.answered.add(item_id)
                    earliest = self.last_speech_end + 1.5
                    self.next_answer_at = max(now + THINK_S, earliest)
        self.speaker.prune(now)
        if self.mode == "parla" and (not self.started or self.state in MIC_PAUSED_STATES):
            return None, reports
        if self.next_answer_at is not None and now >= self.next_answer_at and self.speaking_until < tick:
            self.next_answer_at = None
            self.speaking_until = tick + self.rng.randint(*self.speech_frames) - 1
        voiced = tick <= self.speaking_until
        if voiced and tick == self.speaking_until:
            self.last_speech_end = now
            self.awaiting_reply_since = now
            if self.mode == "parla":
                reports.append({"type": "answer.text", "text": WRITTEN})
        frame = stamped_frame(VOICED if voiced else SILENT, learner_tag(self.phase, self.index), self.frames_sent)
        self.frames_sent += 1
        return frame, reports

    def result(self) -> dict:
        return {
            "tutor_latency_ms": self.tutor_latency_ms,
            "replies_ms": self.replies_ms,
            "errors": self.errors,
            "frames_sent": self.frames_sent,
            "frames_received": self.frames_received,
            "tutor_lost": self.tutor_lost,
            "tutor_reordered": self.tutor_reordered,
            "unreadable": self.unreadable,
            "mic_lag_ms": self.mic_lag_ms,
            "assessment": self.assessment,
            "ended": self.ended,
            "close_code": self.close_code,
            "session_s": round(self.session_s, 2),
            "failure": self.failure,
        }


async def mic_loop(learner: Learner, send, send_json, started_at: float) -> None:
    """Every 100 ms of wall clock (absolute deadlines, no drift): one frame and the due reports."""
    loop = asyncio.get_running_loop()
    tick = 0
    while True:
        due = started_at + tick * FRAME_MS / 1000
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        now = loop.time()
        learner.mic_lag_ms.append(round((now - due) * 1000, 2))
        frame, reports = learner.tick(tick, now)
        for report in reports:
            await send_json(report)
        if frame is not None:
            await send(frame)
        tick += 1


# --- parla mode -------------------------------------------------------------------------------------


async def run_parla(learner: Learner, base_url: str, cookie: str, timeout: float) -> None:
    loop = asyncio.get_running_loop()
    url = base_url.replace("http", "ws", 1) + "/ws/tutor/"
    async with connect(url, additional_headers={"Cookie": cookie, "Origin": base_url}, max_size=None) as ws:
        mic: asyncio.Task | None = None

        async def send_json(event: dict) -> None:
            await ws.send(json.dumps(event))

        started_at = loop.time()
        try:
            async with asyncio.timeout(timeout):
                async for raw in ws:
                    now = loop.time()
                    if isinstance(raw, bytes):
                        if learner.current_item is not None:
                            learner.tutor_audio(learner.current_item, raw, now)
                        continue
                    event = json.loads(raw)
                    kind = event["type"]
                    if kind == "state":
                        learner.state = event["state"]
                        if event["state"] == "ready" and not learner.started:
                            learner.started = True
                            started_at = loop.time()
                            await send_json({"type": "session.start"})
                            mic = asyncio.create_task(mic_loop(learner, ws.send, send_json, started_at))
                        elif event["state"] == "ended":
                            learner.ended = True
                            break
                    elif kind == "audio.start":
                        learner.current_item = event["item_id"]
                        learner.roles[event["item_id"]] = event.get("role") or "tutor"
                    elif kind == "audio.end":
                        learner.audio_ended(event["item_id"])
                        if learner.current_item == event["item_id"]:
                            learner.current_item = None
                    elif kind == "playback.flush":
                        if learner.current_item is not None:
                            learner.flushed_items.add(learner.current_item)
                        item, played = learner.speaker.flush(now)
                        item = item or learner.current_item
                        await send_json({"type": "playback.flushed", "request_id": event["request_id"],
                                         "item_id": item, "played_ms": played if item else 0})
                    elif kind == "assessment":
                        learner.assessment = event.get("status")
                    elif kind == "error":
                        learner.errors.append(event.get("code") or "error")
        except TimeoutError:
            learner.failure = f"no end within {timeout:.0f} s (state {learner.state})"
        finally:
            learner.session_s = loop.time() - started_at
            if mic is not None:
                mic.cancel()
                await asyncio.gather(mic, return_exceptions=True)
        if learner.ended and learner.assessment is None:
            await read_why_it_ended(ws, learner)
        if not learner.ended and learner.failure is None:
            learner.failure = f"socket closed ({ws.close_code}) in state {learner.state}"
        learner.close_code = ws.close_code


async def read_why_it_ended(ws, learner: Learner, timeout: float = 5.0) -> None:
    """A session that ended with no assessment (refused at capacity, for one): the error that follows
    `state: ended`, and the close, as the page reads them."""
    try:
        async with asyncio.timeout(timeout):
            async for raw in ws:
                if isinstance(raw, str) and (event := json.loads(raw))["type"] == "error":
                    learner.errors.append(event.get("code") or "error")
    except (TimeoutError, ConnectionClosed):
        pass


# --- direct mode (baseline) -------------------------------------------------------------------------


def _tutor_session() -> dict:
    from tutor import persona  # pure: no Django settings needed

    return persona.tutor_session_config(
        target_language="es", native_language="en", level="A1", voice="marin",
        transcription_model="gpt-4o-mini-transcribe", speed_beginner=0.85, speed_default=1.0,
    )


async def run_direct(learner: Learner, sim_url: str, seconds: float) -> None:
    loop = asyncio.get_running_loop()
    ids = iter(range(1, 1 << 30))
    headers = {"Authorization": "Bearer loadbench"}
    async with connect(f"{sim_url}?model=gpt-realtime", additional_headers=headers, max_size=None) as ws:

        async def send_json(event: dict) -> None:
            if event["type"] == "playback.report":
                return  # the page's report goes to Parla, not upstream
            await ws.send(json.dumps({"event_id": f"evt_{next(ids)}", **event}))

        async def send_audio(pcm: bytes) -> None:
            await send_json({"type": "input_audio_buffer.append", "audio": base64.b64encode(pcm).decode()})

        await send_json({"type": "session.update", "session": _tutor_session()})
        await send_json({"type": "response.create"})
        learner.started = True
        started_at = loop.time()
        mic = asyncio.create_task(mic_loop(learner, send_audio, send_json, started_at))
        try:
            async with asyncio.timeout(seconds):
                async for raw in ws:
                    now = loop.time()
                    event = json.loads(raw)
                    kind = event["type"]
                    if kind == "response.output_audio.delta":
                        learner.roles.setdefault(event["item_id"], "tutor")
                        learner.tutor_audio(event["item_id"], base64.b64decode(event["delta"]), now)
                    elif kind == "response.output_audio.done":
                        learner.audio_ended(event["item_id"])
                    elif kind == "response.function_call_arguments.done":
                        await send_json({"type": "conversation.item.create", "item": {
                            "type": "function_call_output", "call_id": event["call_id"],
                            "output": json.dumps({"ok": True, "current_level": "A1"})}})
                        await send_json({"type": "response.create"})
                    elif kind == "error":
                        learner.errors.append(event["error"].get("code") or "error")
        except TimeoutError:
            learner.ended = True  # the baseline runs for a fixed time
        finally:
            learner.session_s = loop.time() - started_at
            mic.cancel()
            await asyncio.gather(mic, return_exceptions=True)
        if not learner.ended:
            learner.failure = f"simulator closed the socket ({ws.close_code})"
        learner.close_code = ws.close_code


# --- the process --------------------------------------------------------------------------------------


async def run_one(plan: dict, learner: Learner, client: dict, delay: float) -> None:
    await asyncio.sleep(delay)  # the ramp: learners arrive spread over a few seconds
    try:
        if plan["mode"] == "parla":
            await run_parla(learner, client["url"], client["cookie"], plan["timeout_s"])
        else:
            await run_direct(learner, client["url"], plan["seconds"])
    except (OSError, ConnectionClosed, InvalidStatus) as exc:
        learner.failure = f"{type(exc).__name__}: {exc}"
    except Exception as exc:  # a learner that fails is a failed session in the table, not a lost run
        learner.failure = f"driver error {type(exc).__name__}: {exc}"
    learner.finish_counts()


async def run(plan: dict) -> dict:
    learners = [
        Learner(index=c["index"], phase=plan["phase"], mode=plan["mode"], rng=random.Random(f"{plan['seed']}:{c['index']}"),
                speech_frames=(max(1, plan["speech_ms"][0] // FRAME_MS), max(1, plan["speech_ms"][1] // FRAME_MS)))
        for c in plan["clients"]
    ]
    count = len(learners)
    cpu0, wall0 = sum(os.times()[:2]), time.monotonic()
    await asyncio.gather(*(
        run_one(plan, learner, client, plan["ramp_s"] * i / max(1, count))
        for i, (learner, client) in enumerate(zip(learners, plan["clients"]))
    ))
    return {
        "cpu_s": sum(os.times()[:2]) - cpu0,
        "wall_s": time.monotonic() - wall0,
        "learners": [learner.result() for learner in learners],
    }


def main() -> None:
    plan = json.loads(Path(sys.argv[1]).read_text())
    result = asyncio.run(run(plan))
    Path(sys.argv[2]).write_text(json.dumps(result))


if __name__ == "__main__":
    main()
