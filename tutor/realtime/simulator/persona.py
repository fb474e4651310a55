"""The scripted tutor and the simulated learner (pure: no I/O, deterministic under a seed).

The tutor reads Parla's instruction markers (docs/internal-contracts.md), asks level-appropriate
questions in the target language, and after each learner turn calls `record_probe`. The
simulated learner (`true_level`) decides each probe's outcome; without it a length heuristic
judges a real human's answer. As a model can, it may skip the call (`skip_probe_every`), make it
twice (`repeat_probe_every`) or reply in the wrong language (`wrong_language_every`). It cannot understand speech, and never claims to: the simulator has no
learner words to offer (input.py fails every transcription); so it asks the learner's name only when
it greets, since any answer after that may have given it.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from typing import Any

from assessments.cefr import level_index
from config.openai_models import takes_reasoning

PROBE_TOOL = "record_probe"
DEFAULT_LANGUAGE = "en"
DEFAULT_LEVEL = "A1"

_TARGET_LANGUAGE = re.compile(r"^\s*Target language:\s*([A-Za-z]{2})\b", re.MULTILINE)
_CURRENT_LEVEL = re.compile(r"^\s*Current CEFR level:\s*([ABC][12])\b", re.MULTILINE)
_NARRATOR = re.compile(r"^\s*Role:\s*narrator\b", re.MULTILINE | re.IGNORECASE)
_VERBATIM = re.compile(r"Read aloud verbatim:[ \t]*(.+)")

# Questions per language and level: the tutor cycles through them (start offset from the seed).
QUESTIONS: dict[str, dict[str, tuple[str, ...]]] = {
    "es": {
        "A1": ("¿Cómo te llamas?", "¿De dónde eres?", "¿Qué te gusta comer?"),
        "A2": (
            "¿Qué hiciste el fin de semana pasado?",
            "Describe tu casa, por favor.",
            "¿Cómo es un día normal para ti?",
        ),
        "B1": (
            "¿Qué harías si ganaras un viaje a cualquier país?",
            "Cuéntame una experiencia que te cambió la vida.",
            "¿Qué ventajas y desventajas tiene vivir en una ciudad grande?",
        ),
        "B2": (
            "¿Crees que las redes sociales han mejorado la comunicación? Justifica tu opinión.",
            "¿Qué medidas tomarías para reducir la contaminación en tu ciudad?",
            "Compara la educación de hoy con la de hace treinta años.",
        ),
        "C1": (
            "¿Hasta qué punto debería el Estado regular la inteligencia artificial?",
            "Analiza las consecuencias del teletrabajo para la vida social.",
            "¿Cómo influye la lengua que hablamos en nuestra manera de pensar?",
        ),
        "C2": (
            "Si la memoria colectiva es selectiva, ¿quién decide lo que una sociedad recuerda?",
            "Defiende una postura que no compartes sobre la globalización cultural.",
            "¿Qué matices se pierden al traducir la ironía de una lengua a otra?",
        ),
    },
    "fr": {
        "A1": ("Comment tu t'appelles ?", "Tu viens d'où ?", "Qu'est-ce que tu aimes manger ?"),
        "A2": (
            "Qu'est-ce que tu as fait le week-end dernier ?",
            "Décris ta maison, s'il te plaît.",
            "Comment se passe une journée normale pour toi ?",
        ),
        "B1": (
            "Que ferais-tu si tu gagnais un voyage dans n'importe quel pays ?",
            "Raconte-moi une expérience qui a changé ta vie.",
            "Quels sont les avantages et les inconvénients de la vie dans une grande ville ?",
        ),
        "B2": (
            "Penses-tu que les réseaux sociaux ont amélioré la communication ? Justifie ton avis.",
            "Quelles mesures prendrais-tu pour réduire la pollution dans ta ville ?",
            "Compare l'éducation d'aujourd'hui avec celle d'il y a trente ans.",
        ),
        "C1": (
            "Dans quelle mesure l'État devrait-il réguler l'intelligence artificielle ?",
            "Analyse les conséquences du télétravail sur la vie sociale.",
            "Comment la langue que nous parlons influence-t-elle notre façon de penser ?",
        ),
        "C2": (
            "Si la mémoire collective est sélective, qui décide de ce dont une société se souvient ?",
            "Défends une position que tu ne partages pas sur la mondialisation culturelle.",
            "Quelles nuances se perdent quand on traduit l'ironie d'une langue à l'autre ?",
        ),
    },
    "de": {
        "A1": ("Wie heißt du?", "Woher kommst du?", "Was isst du gern?"),
        "A2": (
            "Was hast du letztes Wochenende gemacht?",
            "Beschreib bitte deine Wohnung.",
            "Wie sieht ein normaler Tag für dich aus?",
        ),
        "B1": (
            "Was würdest du machen, wenn du eine Reise in ein beliebiges Land gewinnen würdest?",
            "Erzähl mir von einem Erlebnis, das dein Leben verändert hat.",
            "Welche Vor- und Nachteile hat das Leben in einer Großstadt?",
        ),
        "B2": (
            "Haben soziale Netzwerke die Kommunikation verbessert? Begründe deine Meinung.",
            "Welche Maßnahmen würdest du gegen die Luftverschmutzung in deiner Stadt ergreifen?",
            "Vergleiche die Schulbildung von heute mit der vor dreißig Jahren.",
        ),
        "C1": (
            "Inwieweit sollte der Staat künstliche Intelligenz regulieren?",
            "Analysiere die Folgen der Arbeit im Homeoffice für das soziale Leben.",
            "Wie beeinflusst die Sprache, die wir sprechen, unser Denken?",
        ),
        "C2": (
            "Wenn das kollektive Gedächtnis selektiv ist, wer entscheidet, woran sich eine Gesellschaft erinnert?",
            "Verteidige einen Standpunkt zur kulturellen Globalisierung, den du nicht teilst.",
            "Welche Nuancen gehen verloren, wenn man Ironie von einer Sprache in eine andere übersetzt?",
        ),
    },
    "it": {
        "A1": ("Come ti chiami?", "Di dove sei?", "Che cosa ti piace mangiare?"),
        "A2": (
            "Che cosa hai fatto lo scorso fine settimana?",
            "Descrivi la tua casa, per favore.",
            "Com'è una giornata normale per te?",
        ),
        "B1": (
            "Che cosa faresti se vincessi un viaggio in un paese qualsiasi?",
            "Raccontami un'esperienza che ti ha cambiato la vita.",
            "Quali sono i vantaggi e gli svantaggi di vivere in una grande città?",
        ),
        "B2": (
            "Pensi che i social network abbiano migliorato la comunicazione? Motiva la tua opinione.",
            "Quali misure prenderesti per ridurre l'inquinamento nella tua città?",
            "Confronta la scuola di oggi con quella di trent'anni fa.",
        ),
        "C1": (
            "Fino a che punto lo Stato dovrebbe regolamentare l'intelligenza artificiale?",
            "Analizza le conseguenze del lavoro da remoto sulla vita sociale.",
            "In che modo la lingua che parliamo influenza il nostro modo di pensare?",
        ),
        "C2": (
            "Se la memoria collettiva è selettiva, chi decide che cosa una società ricorda?",
            "Difendi una posizione che non condividi sulla globalizzazione culturale.",
            "Quali sfumature si perdono quando si traduce l'ironia da una lingua all'altra?",
        ),
    },
    "en": {
        "A1": ("What is your name?", "Where are you from?", "What food do you like?"),
        "A2": (
            "What did you do last weekend?",
            "Please describe your home.",
            "What is a normal day like for you?",
        ),
        "B1": (
            "What would you do if you won a trip to any country?",
            "Tell me about an experience that changed your life.",
            "What are the pros and cons of living in a big city?",
        ),
        "B2": (
            "Have social networks improved communication? Give reasons for your view.",
            "What would you do to reduce pollution in your city?",
            "Compare education today with education thirty years ago.",
        ),
        "C1": (
            "To what extent should governments regulate artificial intelligence?",
            "Analyse the consequences of remote work for social life.",
            "How does the language we speak shape the way we think?",
        ),
        "C2": (
            "If collective memory is selective, who decides what a society remembers?",
            "Argue for a position on cultural globalisation that you do not share.",
            "Which nuances are lost when irony is translated from one language to another?",
        ),
    },
}

GREETINGS = {
    "es": "¡Hola! Soy tu tutora de español. Vamos a conversar un poco.",
    "fr": "Bonjour ! Je suis ta tutrice de français. Discutons un peu.",
    "de": "Hallo! Ich bin deine Deutschtutorin. Lass uns ein bisschen sprechen.",
    "it": "Ciao! Sono la tua tutor di italiano. Facciamo due chiacchiere.",
    "en": "Hello! I am your English tutor. Let's have a little chat.",
}

ACKNOWLEDGEMENTS = {
    "es": ("Muy bien.", "Gracias.", "De acuerdo."),
    "fr": ("Très bien.", "Merci.", "D'accord."),
    "de": ("Sehr gut.", "Danke.", "Alles klar."),
    "it": ("Molto bene.", "Grazie.", "D'accordo."),
    "en": ("Very good.", "Thank you.", "All right."),
}

NARRATOR_LINE = "Here is your assessment summary."

# Heuristic for a real human (no `true_level`): an answer sustains a level when it is at least
# this long. Text answers are measured in words, audio answers in voiced milliseconds.
MIN_WORDS = {"A1": 2, "A2": 5, "B1": 9, "B2": 14, "C1": 20, "C2": 28}
MIN_SPEECH_MS = {"A1": 800, "A2": 1500, "B1": 2500, "B2": 4000, "C1": 6000, "C2": 8000}

_EVIDENCE = {
    "sustained": (
        "answered the task fully and intelligibly",
        "handled the task with only minor slips",
        "gave a relevant, well-formed answer",
    ),
    "breakdown": (
        "could not complete the task at this level",
        "answer broke down into fragments",
        "lost control of structure and vocabulary",
    ),
}


@dataclass(frozen=True)
class TutorContext:
    """What the session instructions tell the tutor."""

    language: str = DEFAULT_LANGUAGE
    level: str = DEFAULT_LEVEL
    narrator: bool = False


def parse_instructions(instructions: str | None) -> TutorContext:
    """Read the `Target language:`, `Current CEFR level:` and `Role: narrator` markers."""
    text = instructions or ""
    language = _TARGET_LANGUAGE.search(text)
    level = _CURRENT_LEVEL.search(text)
    return TutorContext(
        language=language.group(1).lower() if language else DEFAULT_LANGUAGE,
        level=level.group(1) if level else DEFAULT_LEVEL,
        narrator=bool(_NARRATOR.search(text)),
    )


def verbatim_text(instructions: str | None) -> str | None:
    """The text after `Read aloud verbatim:` (same line), if the instructions carry one."""
    match = _VERBATIM.search(instructions or "")
    return match.group(1).strip() if match else None


@dataclass(frozen=True)
class LearnerTurn:
    """One learner answer: typed text, or committed audio (voiced length + transcript)."""

    kind: str  # "text" | "audio"
    text: str = ""
    speech_ms: int = 0

    @property
    def words(self) -> int:
        return len(self.text.split())


def probe_outcome(level: str, turn: LearnerTurn, true_level: str | None) -> str:
    """`sustained` or `breakdown`: decided by the simulated learner, else by answer length."""
    if true_level is not None:
        return "sustained" if level_index(level) <= level_index(true_level) else "breakdown"
    if turn.kind == "text":
        return "sustained" if turn.words >= MIN_WORDS[level] else "breakdown"
    return "sustained" if turn.speech_ms >= MIN_SPEECH_MS[level] else "breakdown"


@dataclass(frozen=True)
class Speech:
    """An output item that speaks `text` (audio + transcript)."""

    text: str


@dataclass(frozen=True)
class ToolCall:
    """An output item that calls a function."""

    name: str
    arguments: dict[str, Any]


# What one response outputs, in order: one item or several (see `PROBE_SHAPES`).
Plan = tuple["Speech | ToolCall", ...]

# How the tutor's response to a learner answer is made up (the `probe_shape` knob):
# - "call": the record_probe call alone; the tutor speaks on only after the function output and a
#   new response.create (what Parla's tests have always seen, and gpt-realtime-1.5 and older do);
# - "call_answer": the call, then the tutor's answer in the same response;
# - "preamble_call_answer": a short spoken preamble, the call, then the answer, in one response.
#   The gpt-realtime-2 generation does this: "Realtime responses can include multiple output items
#   per turn", a preamble ("commentary") before the final answer (Microsoft Learn, Azure OpenAI
#   "GPT Realtime 2" concepts page, "Preambles and response phases"); "Preambles let an agent
#   acknowledge the request out loud while tools run" (vercel.com/ai-gateway/models/gpt-realtime-2).
# - "auto" (the default): "preamble_call_answer" for the gpt-realtime-2 family, else "call".
PROBE_SHAPES = ("auto", "call", "call_answer", "preamble_call_answer")

PREAMBLES = {
    "es": ("Mmm, a ver...", "Vale, vale...", "Ajá..."),
    "fr": ("Hmm, voyons...", "D'accord...", "Ah, je vois..."),
    "de": ("Hm, mal sehen...", "Okay...", "Aha..."),
    "it": ("Mmm, vediamo...", "Va bene...", "Ah, capisco..."),
    "en": ("Hmm, let me see...", "Okay...", "I see..."),
}


def resolve_probe_shape(shape: str, model: str | None) -> str:
    """The concrete shape of `shape` for a session of `model` ("auto" depends on the model)."""
    if shape != "auto":
        return shape
    return "preamble_call_answer" if takes_reasoning(model) else "call"


def wrong_language(language: str) -> str:
    """The language a tutor that errs answers in: English, or Spanish for an English placement."""
    return "es" if _bank_language(language) == "en" else "en"


def _bank_language(language: str) -> str:
    return language if language in QUESTIONS else DEFAULT_LANGUAGE


def _has_tool(tools: list[dict[str, Any]] | None, name: str) -> bool:
    return any(isinstance(t, dict) and t.get("name") == name for t in tools or ())


def _every(n: int, count: int) -> bool:
    """True on every `n`th of a count that starts at 1 (never when `n` is 0)."""
    return n > 0 and count % n == 0


@dataclass
class ScriptedTutor:
    """Per-session script: what the next response says or calls.

    The misbehaviour settings (knobs of the same names) make it err like a real model can, on every
    Nth learner answer (`skip_probe_every`: no record_probe call; `repeat_probe_every`: the call made
    twice) or on every Nth spoken reply (`wrong_language_every`: the reply is in another language).
    """

    rng: random.Random
    true_level: str | None = None
    probe_shape: str = "call"  # a concrete shape: resolve_probe_shape() first
    skip_probe_every: int = 0
    repeat_probe_every: int = 0
    wrong_language_every: int = 0
    unprobed_turn: LearnerTurn | None = None
    pending_call_id: str | None = None
    spoken: int = 0
    answers: int = 0  # learner answers the tutor has reacted to (the misbehaviour count)
    replies: int = 0  # spoken replies with a question (the wrong-language count)
    _next_question: dict[tuple[str, str], int] = field(default_factory=dict)
    _planned_turn: LearnerTurn | None = None  # the answer the last planned call records

    def learner_turn(self, turn: LearnerTurn) -> None:
        """A learner answer arrived (several before a response are judged together)."""
        if self.unprobed_turn is None:
            self.unprobed_turn = turn
        else:
            previous = self.unprobed_turn
            self.unprobed_turn = LearnerTurn(
                turn.kind, f"{previous.text} {turn.text}".strip(), previous.speech_ms + turn.speech_ms
            )

    def assistant_turn(self) -> None:
        """An assistant message was added to the conversation (a resumed session replaying it): the
        learner turns before it were already answered, and the tutor has already greeted."""
        self.unprobed_turn = None
        self.spoken += 1

    def call_not_made(self) -> None:
        """The response that was to record the last answer ended before its call: the answer goes
        back to the unrecorded ones (before any that came since)."""
        turn, self._planned_turn = self._planned_turn, None
        if turn is None:
            return
        later, self.unprobed_turn = self.unprobed_turn, turn
        if later is not None:
            self.learner_turn(later)

    def call_replayed(self) -> None:
        """A function call was added to the conversation by the client (a resumed session replaying
        a probe): the learner turns before it were already recorded."""
        self.unprobed_turn = None

    def function_output(self, call_id: str) -> None:
        if call_id == self.pending_call_id:
            self.pending_call_id = None

    def plan(
        self,
        session_instructions: str | None,
        response_instructions: str | None,
        tools: list[dict[str, Any]] | None,
        tool_choice: object,
        out_of_band: bool,
    ) -> Plan:
        """Decide the next response's output items (see DESIGN section 4 and the contracts)."""
        verbatim = verbatim_text(response_instructions) or verbatim_text(session_instructions)
        if verbatim:
            return (Speech(verbatim),)
        context = parse_instructions(session_instructions)
        if context.narrator:
            return (Speech(response_instructions.strip() if response_instructions else NARRATOR_LINE),)
        if out_of_band:
            return (Speech(self._question(context, advance=False)),)
        if self.unprobed_turn is not None and tool_choice != "none" and _has_tool(tools, PROBE_TOOL):
            return self._react(context)
        return (Speech(self._speak_next(context)),)

    def _react(self, context: TutorContext) -> Plan:
        """The response to a learner answer: the probe call in the session's shape (or the error)."""
        self.answers += 1
        call = self._probe(context)
        calls: tuple[ToolCall, ...] = (call,)
        if _every(self.skip_probe_every, self.answers):
            calls = ()  # the model forgot to record the answer and just goes on
        elif _every(self.repeat_probe_every, self.answers):
            calls = (call, call)  # the same call made twice (each gets its own call_id)
        if self.probe_shape == "call" and calls:
            return calls
        answer = (Speech(self._speak_next(context)),)
        if self.probe_shape == "preamble_call_answer" and calls:
            preamble = self.rng.choice(PREAMBLES[_bank_language(context.language)])
            return (Speech(preamble), *calls, *answer)
        return (*calls, *answer)

    def _probe(self, context: TutorContext) -> ToolCall:
        turn, self.unprobed_turn = self.unprobed_turn, None
        assert turn is not None
        self._planned_turn = turn
        outcome = probe_outcome(context.level, turn, self.true_level)
        measure = f"{turn.words} words" if turn.kind == "text" else f"{turn.speech_ms / 1000:.1f} s of speech"
        evidence = f"{measure}; {self.rng.choice(_EVIDENCE[outcome])}"
        call = ToolCall(PROBE_TOOL, {"level": context.level, "outcome": outcome, "evidence": evidence})
        return call

    def _speak_next(self, context: TutorContext) -> str:
        language = _bank_language(context.language)
        if self.spoken > 0:
            self.replies += 1
            if _every(self.wrong_language_every, self.replies):
                language = wrong_language(language)
        greeting = self.spoken == 0
        opener = GREETINGS[language] if greeting else self.rng.choice(ACKNOWLEDGEMENTS[language])
        self.spoken += 1
        return f"{opener} {self._question(context, advance=True, language=language, greeting=greeting)}"

    def _question(
        self, context: TutorContext, *, advance: bool, language: str | None = None, greeting: bool = False
    ) -> str:
        language = language or _bank_language(context.language)
        bank = QUESTIONS[language][context.level]
        if context.level == "A1":
            # The A1 bank opens with the learner's name: asked when the tutor greets, never after an
            # answer, which may well have given it (the simulator cannot hear what a spoken one said).
            if greeting:
                return bank[0]
            bank = bank[1:]
        key = (language, context.level)
        if key not in self._next_question:
            self._next_question[key] = self.rng.randrange(len(bank))
        index = self._next_question[key]
        if advance:
            self._next_question[key] = index + 1
        return bank[index % len(bank)]
