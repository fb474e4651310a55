"""Run the simulator on its own event loop in a daemon thread (demo mode inside a dev server)."""

from __future__ import annotations

import asyncio
import threading

from .knobs import SimulatorKnobs
from .server import RealtimeSimulator


class BackgroundSimulator:
    """`url = BackgroundSimulator(port=8765).start()`; `stop()` closes it and joins the thread."""

    def __init__(self, knobs: SimulatorKnobs | None = None, host: str = "127.0.0.1", port: int = 0) -> None:
        self.simulator = RealtimeSimulator(knobs=knobs, host=host, port=port)
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None

    @property
    def url(self) -> str:
        return self.simulator.url

    def start(self, timeout: float = 5.0) -> str:
        """Start the thread and wait until the simulator listens; returns its URL."""
        self._thread = threading.Thread(
            target=asyncio.run, args=(self._main(),), name="realtime-simulator", daemon=True
        )
        self._thread.start()
        if not self._ready.wait(timeout):
            raise TimeoutError("the realtime simulator did not start in time")
        if self._error is not None:
            raise RuntimeError("the realtime simulator failed to start") from self._error
        return self.url

    def call(self, coro, timeout: float = 10.0):
        """Run `coro` on the simulator's loop and return its result (e.g. to change knobs in a test)."""
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def __enter__(self) -> "BackgroundSimulator":
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def stop(self, timeout: float = 5.0) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(timeout)

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        try:
            await self.simulator.start()
        except BaseException as exc:  # reported to start()
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            await self.simulator.stop()
