"""Timestamps carried inside the audio itself, for the load benchmark (bench/load.py).

Every 100 ms frame the benchmark sends (a learner's microphone) or the simulator produces (the tutor's
voice) carries a stamp in the least significant bit of its first 144 samples: a magic number, a tag
(who sent it), a sequence number and the sending moment on the host's monotonic clock. The relay
forwards audio bytes unchanged, so the receiver reads the stamp back wherever the frame went: no id
has to be matched across processes, and a frame's latency, loss or reordering is known from the frame
alone. Changing the lowest bit moves a sample by 1/32768 of full scale: silence stays at about
-96 dBFS, far under the simulator's VAD threshold (-35 dBFS), and speech is unchanged to the ear.

`time.monotonic_ns()` is CLOCK_MONOTONIC, one clock for every process on a Linux host, so a stamp
written by one process is read against the same clock by another.
"""

from __future__ import annotations

import os
import struct
import time
import zlib

import numpy as np

MAGIC = 0xA55A
_LAYOUT = struct.Struct(">HIIQ")  # magic, tag, seq, monotonic ns: 144 bits
STAMP_SAMPLES = _LAYOUT.size * 8
STAMP_BYTES = STAMP_SAMPLES * 2
FRAME_MS = 100
FRAME_BYTES = 4800  # 100 ms of PCM16 mono 24 kHz: the page's frame and the simulator's audio delta
SAMPLE_RATE = 24000

# Learner stamps: the tag is (phase << 20) | client index, so one simulator tells the phases apart.
CLIENT_BITS = 20


def learner_tag(phase: int, client: int) -> int:
    return (phase << CLIENT_BITS) | client


def split_tag(tag: int) -> tuple[int, int]:
    return tag >> CLIENT_BITS, tag & ((1 << CLIENT_BITS) - 1)


def item_tag(item_id: str) -> int:
    """The tag of a tutor audio item's frames: a checksum of its item id (a frame of another item
    read under this id is misrouted, not merely late)."""
    return zlib.crc32(item_id.encode())


def stamp(samples: np.ndarray, tag: int, seq: int, t_ns: int | None = None) -> None:
    """Write the stamp into `samples` (int16, writable, at least STAMP_SAMPLES long) in place."""
    packed = _LAYOUT.pack(MAGIC, tag & 0xFFFFFFFF, seq & 0xFFFFFFFF, time.monotonic_ns() if t_ns is None else t_ns)
    bits = np.unpackbits(np.frombuffer(packed, dtype=np.uint8)).astype(np.int16)
    head = samples[:STAMP_SAMPLES]
    head &= ~np.int16(1)
    head |= bits


def stamped_frame(base: np.ndarray, tag: int, seq: int) -> bytes:
    """A copy of `base` (int16 samples) stamped now, as PCM16 bytes."""
    samples = base.copy()
    stamp(samples, tag, seq)
    return samples.tobytes()


def read_stamp(pcm: bytes | bytearray | memoryview, offset: int = 0) -> tuple[int, int, int] | None:
    """(tag, seq, t_ns) of the stamp starting at byte `offset`, or None when there is none."""
    if len(pcm) - offset < STAMP_BYTES:
        return None
    samples = np.frombuffer(pcm, dtype="<i2", count=STAMP_SAMPLES, offset=offset)
    magic, tag, seq, t_ns = _LAYOUT.unpack(np.packbits((samples & 1).astype(np.uint8)).tobytes())
    if magic != MAGIC:
        return None
    return tag, seq, t_ns


def voiced_frame(amplitude: float = 0.3) -> np.ndarray:
    """100 ms of a steady voiced sound (170 Hz and its octave), well above the VAD threshold."""
    t = np.arange(FRAME_BYTES // 2) / SAMPLE_RATE
    wave = (0.6 * np.sin(2 * np.pi * 170 * t) + 0.4 * np.sin(2 * np.pi * 340 * t)) * amplitude * 32767
    return wave.astype("<i2")


def silent_frame() -> np.ndarray:
    return np.zeros(FRAME_BYTES // 2, dtype="<i2")


class StreamStamps:
    """Reads the stamps of one audio stream cut at FRAME_BYTES boundaries, however it is chunked.

    The sender stamps every frame at its start; the stream may be re-chunked on the way (several frames
    in one message, or a frame split in two), and whole frames may be dropped. A stamp split across two
    messages is not read (`unreadable` counts them).
    """

    def __init__(self) -> None:
        self.position = 0  # bytes of the stream seen so far
        self.unreadable = 0

    def feed(self, pcm: bytes) -> list[tuple[int, int, int]]:
        found = []
        start = self.position
        boundary = -(-start // FRAME_BYTES) * FRAME_BYTES  # the first frame start at or after `start`
        while boundary < start + len(pcm):
            result = read_stamp(pcm, boundary - start)
            if result is None:
                self.unreadable += 1
            else:
                found.append(result)
            boundary += FRAME_BYTES
        self.position += len(pcm)
        return found


class Sequence:
    """Frames of one stream by sequence number: how many arrived, were lost in between, or came late."""

    def __init__(self) -> None:
        self.received = 0
        self.highest = -1
        self.lowest: int | None = None
        self.reordered = 0

    def add(self, seq: int) -> None:
        self.received += 1
        if seq < self.highest:
            self.reordered += 1
        self.highest = max(self.highest, seq)
        self.lowest = seq if self.lowest is None else min(self.lowest, seq)

    def lost(self, from_zero: bool = False) -> int:
        """Frames missing between the first and the last that arrived (from frame 0 with `from_zero`)."""
        if self.highest < 0:
            return 0
        first = 0 if from_zero else (self.lowest or 0)
        return max(0, self.highest - first + 1 - self.received)


def proc_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process `pid` (Linux /proc)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of proc(5))
    return ticks / _CLOCK_TICKS


def thread_cpu_seconds(pid: int, tid: int) -> float:
    """User + system CPU seconds of thread `tid` of process `pid` (/proc/PID/task/TID/stat); the
    main thread's id is the process's. For Daphne the main thread runs the event loop."""
    with open(f"/proc/{pid}/task/{tid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS


def thread_cpu_wait_seconds(pid: int) -> float:
    """Seconds the main thread of process `pid` was runnable but waited for a CPU (Linux
    /proc/PID/task/PID/schedstat, its second field: time spent waiting on a runqueue, in ns; the
    kernel's Documentation/scheduler/sched-stats.rst). For Daphne that is its event loop: time the
    machine, not the server, made every learner wait."""
    with open(f"/proc/{pid}/task/{pid}/schedstat") as f:
        return int(f.read().split()[1]) / 1e9


def proc_rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
