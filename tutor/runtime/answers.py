"""AnswerCollector: the learner's answers, one per turn of the tutor, fragments merged.

An answer is everything the learner said or typed between two tutor turns. The realtime API commits
the learner's speech in pieces (a thinking pause longer than the turn detection's silence ends one),
and the tutor may start a reply that the learner talks over; neither ends the answer. It ends when a
tutor turn is completed that the learner did not interrupt (`close`), when placement ends, or when the
learner stops.

The collector keeps, per answer: its fragments in order (committed speech items, whose words arrive
later from the input transcription, or fail to; typed text), the level and task the tutor asked it
at, the learner's audio since the previous answer ended (bounded: `MAX_AUDIO_MS`, oldest dropped, so
a long silence before answering costs nothing; before the learner speaks, only `PREROLL_MS`), and the
tutor's own `record_probe` opinion, if it gave one. It has no I/O: the runtime stores, measures and
rates what it hands back.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import deque
from dataclasses import dataclass, field

from assessments.fluency import FluencyMeasures, analyse, measure, with_words
from assessments.rating import SPOKEN, WRITTEN, Answer
from tutor.realtime.audio import BYTES_PER_MS

MAX_AUDIO_MS = 120_000  # two minutes of PCM16 24 kHz = 5.76 MB per learner at most
# Until the learner starts speaking (the upstream's VAD says so), only this much of the microphone is
# kept: the page streams it all the time, and the seconds the tutor speaks are not the answer's. The
# onset is in it (a frame reaches Parla before the upstream hears it), and so is enough silence for
# the fluency measures' noise floor. Memory per session (issue 14): 8 s of audio held became 3 s.
PREROLL_MS = 3_000


@dataclass(frozen=True)
class TutorOpinion:
    """The tutor's `record_probe` call about an answer: a second opinion, never the rating."""

    level: str
    outcome: str
    evidence: str
    call_id: str


@dataclass
class Fragment:
    mode: str  # spoken | written
    item_id: str  # the committed item (spoken) or "" (written)
    text: str | None = None  # None: a spoken fragment whose transcription has not arrived yet
    words_known: bool = False


@dataclass
class OpenAnswer:
    answer_id: str  # also the wire's item_id of the learner's transcript entry
    level: str  # the level probed: the tutor's level when it asked
    task: str  # the tutor's last words before the answer
    fragments: list[Fragment] = field(default_factory=list)
    audio: bytes = b""  # set when the answer is closed; released once stored (release_audio)
    _measures: FluencyMeasures | None = None  # of `audio`, without words: measured once
    _span: bytes | None = None  # the part of `audio` worth keeping, found with the measures
    turn_id: int | None = None
    opinion: TutorOpinion | None = None
    transcribed: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def mode(self) -> str:
        """Written if any of it was typed (it is rated as written), else spoken."""
        return WRITTEN if any(f.mode == WRITTEN for f in self.fragments) else SPOKEN

    @property
    def text(self) -> str:
        """The learner's own words only: typed, or what the recognizer produced."""
        return " ".join(f.text for f in self.fragments if f.words_known and f.text).strip()

    @property
    def words_known(self) -> bool:
        return any(f.words_known and f.text for f in self.fragments)

    @property
    def has_spoken(self) -> bool:
        return any(f.mode == SPOKEN for f in self.fragments)

    def _update_transcribed(self) -> None:
        if all(f.text is not None for f in self.fragments):
            self.transcribed.set()
        else:
            self.transcribed.clear()

    def fluency(self) -> FluencyMeasures | None:
        """The measures of its audio (None for an answer only typed), measured once per closed answer
        (with the span of its recording worth keeping, from the same pass)."""
        if not self.has_spoken:
            return None
        if self._measures is not None:
            measures = self._measures
        elif self.audio:  # closed with its audio: this is final
            measures, self._span = analyse(self.audio)
            self._measures = measures
        else:
            measures = measure(self.audio)
        words = len(self.text.split()) if self.words_known and self.mode == SPOKEN else None
        return with_words(measures, words)

    def speech_span(self) -> bytes:
        """Its audio from just before the first voice to just after the last (its recording)."""
        if self._span is None and self.audio:
            self.fluency()
        return self._span or b""

    def release_audio(self) -> None:
        """Its recording was stored: keep the measures, drop the audio (a session holds no answer's
        audio once it is saved; issue 14's memory per session)."""
        self.fluency()
        self.audio = b""
        self._span = None

    def for_rater(self, language: str) -> Answer:
        return Answer(
            language=language,
            level=self.level,
            task=self.task,
            mode=self.mode,
            text=self.text,
            words_known=self.words_known,
            fluency=self.fluency(),
        )


class AnswerCollector:
    """The open answer of one session, and the learner audio it will get."""

    def __init__(self, max_audio_ms: int = MAX_AUDIO_MS, preroll_ms: int = PREROLL_MS):
        self.current: OpenAnswer | None = None
        self.asked_level: str = ""
        self.asked_task: str = ""
        self._closed: deque[OpenAnswer] = deque(maxlen=4)  # late transcripts still find their answer
        self._frames: deque[bytes] = deque()
        self._audio_bytes = 0
        self._max_audio_bytes = max_audio_ms * BYTES_PER_MS
        self._max_preroll_bytes = min(preroll_ms, max_audio_ms) * BYTES_PER_MS
        self._heard_speech = False  # the upstream heard the learner speak since the last answer ended
        self._ids = itertools.count(1)

    # --- what the tutor asked -----------------------------------------------------------------

    def tutor_asked(self, level: str, text: str) -> None:
        """A tutor turn was recorded: the next answer probes `level`, its task is `text`."""
        self.asked_level, self.asked_task = level, text

    # --- the learner's input --------------------------------------------------------------------

    def audio(self, pcm: bytes) -> None:
        self._frames.append(pcm)
        self._audio_bytes += len(pcm)
        limit = self._max_audio_bytes if self._heard_speech else self._max_preroll_bytes
        while self._audio_bytes > limit and len(self._frames) > 1:
            self._audio_bytes -= len(self._frames.popleft())

    def speech_started(self) -> None:
        """The upstream heard the learner start speaking: from now on the answer's audio is all kept."""
        self._heard_speech = True

    def committed(self, item_id: str, level: str) -> OpenAnswer:
        """A piece of speech was committed upstream: a fragment whose words are still to come."""
        self._heard_speech = True
        answer = self._open(level)
        if not any(f.item_id == item_id for f in answer.fragments):
            answer.fragments.append(Fragment(SPOKEN, item_id))
            answer._update_transcribed()
        return answer

    def transcribed(self, item_id: str, text: str | None, level: str) -> OpenAnswer:
        """The input transcription of `item_id` arrived (`text`), or failed (None: no words known)."""
        answer = self._holding(item_id) or self.committed(item_id, level)
        for fragment in answer.fragments:
            if fragment.item_id == item_id:
                fragment.text = (text or "").strip()
                fragment.words_known = bool(fragment.text)
        answer._update_transcribed()
        return answer

    def written(self, text: str, level: str) -> OpenAnswer:
        answer = self._open(level)
        answer.fragments.append(Fragment(WRITTEN, "", text, words_known=True))
        answer._update_transcribed()
        return answer

    def opinion(self, opinion: TutorOpinion) -> bool:
        """Attach the tutor's record_probe call to the open answer; False if there is none or it
        already has one (a repeated call)."""
        if self.current is None or self.current.opinion is not None:
            return False
        self.current.opinion = opinion
        return True

    def audio_so_far(self) -> bytes:
        return b"".join(self._frames)

    # --- the end of an answer ---------------------------------------------------------------------

    def close(self) -> OpenAnswer | None:
        """End the open answer (a tutor turn completed, or placement ends): it takes the audio so far."""
        answer, self.current = self.current, None
        if answer is None:
            return None
        answer.audio = self.audio_so_far()
        self._frames.clear()
        self._audio_bytes = 0
        self._heard_speech = False
        self._closed.append(answer)
        return answer

    def _open(self, level: str) -> OpenAnswer:
        if self.current is None:
            self.current = OpenAnswer(
                answer_id=f"answer_{next(self._ids)}", level=self.asked_level or level, task=self.asked_task
            )
        return self.current

    def _holding(self, item_id: str) -> OpenAnswer | None:
        for answer in (self.current, *reversed(self._closed)):
            if answer is not None and any(f.item_id == item_id for f in answer.fragments):
                return answer
        return None
