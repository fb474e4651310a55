"""Which upstream a session talks to (the narrator's session is opened by tutor.runtime.narrator).

With OPENAI_API_KEY the real OpenAI Realtime API; otherwise PARLA_REALTIME_URL (e.g. a standalone
`manage.py realtime_simulator`), or, when that is empty too, the bundled simulator started inside this
server process on an ephemeral loopback port (demo mode). The API key stays on the server.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from django.conf import settings

from tutor.realtime.client import RealtimeClient
from tutor.realtime.record import UpstreamRecorder
from tutor.realtime.relay import SpeechRelay

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Upstream:
    url: str
    api_key: str | None
    model: str
    kind: str  # "openai" | "simulator" (TutorSession.Upstream values)

    def client(self, name: str, handler=None) -> RealtimeClient:
        client = RealtimeClient(
            self.url,
            api_key=self.api_key,
            model=self.model,
            name=name,
            handler=handler,
            validate_sent=settings.PARLA_VALIDATE_EVENTS,
            keepalive=settings.PARLA_UPSTREAM_KEEPALIVE_SECONDS,
        )
        if settings.PARLA_UPSTREAM_LOG:  # each session's traffic as JSON lines (tutor.realtime.record)
            client.recorder = UpstreamRecorder(settings.PARLA_UPSTREAM_LOG, name)
        return client


# One bundled simulator per event loop (the server's), started by the first session that needs it.
_embedded: dict[asyncio.AbstractEventLoop, asyncio.Task] = {}


async def _start_embedded_simulator() -> str:
    from tutor.realtime.simulator import RealtimeSimulator, SimulatorKnobs  # only demo mode needs it

    simulator = RealtimeSimulator(knobs=SimulatorKnobs(pace=settings.PARLA_SIMULATOR_PACE), port=0)
    await simulator.start()
    logger.info("embedded simulator started", extra={"url": simulator.url})
    return simulator.url


async def _embedded_simulator_url() -> str:
    """The bundled simulator of this event loop; it lives as long as the server process."""
    loop = asyncio.get_running_loop()
    if loop not in _embedded:
        _embedded[loop] = loop.create_task(_start_embedded_simulator(), name="embedded-simulator-start")
    return await asyncio.shield(_embedded[loop])


async def resolve_upstream() -> Upstream:
    model = settings.PARLA_REALTIME_MODEL
    if settings.OPENAI_API_KEY:
        return Upstream(settings.PARLA_REALTIME_URL, settings.OPENAI_API_KEY, model, "openai")
    url = settings.PARLA_REALTIME_URL or await _embedded_simulator_url()
    return Upstream(url, None, model, "simulator")


def relay_with_errors_logged(relay: SpeechRelay, name: str):
    """An event handler: speech goes to the learner, an error nobody claimed is logged."""

    async def handle(event) -> None:
        if event.type == "error":
            logger.warning(
                "upstream error",
                extra={"upstream": name, "code": event.error.code, "error_message": event.error.message,
                       "event_id": event.error.event_id},
            )
            return
        await relay.handle(event)

    return handle
