"""The ASGI lifespan (tutor/serving.py): what runs while a server that sends it (uvicorn) serves.

Daphne's path (the reactor's triggers) is exercised by every live Daphne test; this is the other one.
That uvicorn really sends it and the loop watch then runs is checked end to end by
test_load_bench.test_uvicorn_and_the_proxy_row_end_to_end.
"""

from __future__ import annotations

import asyncio

import pytest

from tutor.serving import Lifespan


class Recorder:
    def __init__(self, name: str, log: list[str], fail_start: bool = False, fail_stop: bool = False):
        self.name, self.log, self.fail_start, self.fail_stop = name, log, fail_start, fail_stop

    def start(self) -> None:
        asyncio.get_running_loop()  # called inside the running loop, as the services need
        if self.fail_start:
            raise RuntimeError("cannot start")
        self.log.append(f"start {self.name}")

    async def stop(self) -> None:
        if self.fail_stop:
            raise RuntimeError("cannot stop")
        self.log.append(f"stop {self.name}")


async def run(app, messages: list[str]) -> list[dict]:
    inbox: asyncio.Queue = asyncio.Queue()
    for message in messages:
        inbox.put_nowait({"type": message})
    sent: list[dict] = []

    async def send(message):
        sent.append(message)

    async with asyncio.timeout(5):
        await app({"type": "lifespan", "asgi": {"version": "3.0"}}, inbox.get, send)
    return sent


async def test_services_start_at_startup_and_stop_in_reverse_at_shutdown():
    log: list[str] = []
    app = Lifespan(Recorder("sweeper", log), Recorder("watch", log, fail_stop=True), Recorder("metrics", log))
    sent = await run(app, ["lifespan.startup", "lifespan.shutdown"])
    assert [m["type"] for m in sent] == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    # One service failing to stop does not keep the others running.
    assert log == ["start sweeper", "start watch", "start metrics", "stop metrics", "stop sweeper"]


async def test_a_service_that_cannot_start_fails_the_startup():
    log: list[str] = []
    sent = await run(Lifespan(Recorder("sweeper", log), Recorder("watch", log, fail_start=True)), ["lifespan.startup"])
    assert [m["type"] for m in sent] == ["lifespan.startup.failed"] and "cannot start" in sent[0]["message"]
    assert log == ["start sweeper"]


def test_the_application_routes_the_lifespan_scope():
    from config.asgi import application, services

    lifespan = application.application_mapping["lifespan"]
    assert isinstance(lifespan, Lifespan) and lifespan.services == services
    assert {type(s).__name__ for s in services} == {"Sweeper", "LoopWatch", "MetricsServer", "Drain"}
