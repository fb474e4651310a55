"""Parla served with Uvicorn: `python -m tutor.serve [--host H] [--port P | --fd N]`.

Uvicorn with uvloop's event loop, httptools' HTTP parser and its websockets-sansio implementation,
the other server `bench/load.py --servers daphne,uvicorn` measures (docs/benchmarks.md, `servers`;
the README's "The server process"). The image serves with Daphne, measured the faster here; this is
for a machine where Uvicorn measures faster, with the same limits and the same drain.

What Parla needs of its server beyond ASGI, under Uvicorn:
- the ASGI lifespan, which starts and stops the process's services (config/asgi.py, tutor/serving.py);
- the send queue's limit, close 4008 (tutor/backpressure.py, `UvicornSocket`);
- the drain on SIGTERM (tutor/drain.py): `Server.handle_exit` hands the first SIGTERM to the drain,
  which stops the server (`should_exit`) once it is done; a second SIGTERM, or SIGINT, is Uvicorn's
  own handling (a graceful shutdown that closes every websocket with 1012).

The websocket frame limit is Daphne's, 1 MiB (Daphne's `websocket_max_size` default,
daphne/server.py), so a frame over it gets the same 1009 close under either server.
"""

from __future__ import annotations

import argparse
import signal
from types import FrameType

import uvicorn

# uvicorn's Config arguments (www.uvicorn.org/settings/: loop, http, ws, ws_max_size, lifespan,
# timeout_graceful_shutdown), as `bench/load.py --servers uvicorn` measured them.
OPTIONS = {
    "loop": "uvloop",
    "http": "httptools",
    "ws": "websockets-sansio",
    "ws_max_size": 1024 * 1024,
    "lifespan": "on",  # the services must run: a failing startup stops the process
    # After the drain nothing is left; when a second signal skipped it, what is left gets this long.
    "timeout_graceful_shutdown": 10,
}


class Server(uvicorn.Server):
    """Uvicorn's server, with SIGTERM going to the drain first."""

    def __init__(self, config: uvicorn.Config):
        super().__init__(config)
        from tutor import drain

        self.drain = drain.current
        self.drain.serve_with(self.exit_after_drain)

    def exit_after_drain(self) -> None:
        self.should_exit = True

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if sig == signal.SIGTERM and self.drain.take_sigterm():
            return  # the drain runs; it sets should_exit when done
        super().handle_exit(sig, frame)


def config(*, host: str = "127.0.0.1", port: int = 8000, fd: int | None = None) -> uvicorn.Config:
    return uvicorn.Config("config.asgi:application", host=host, port=port, fd=fd, **OPTIONS)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tutor.serve", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--fd", type=int, default=None, help="serve on this inherited listening socket")
    args = parser.parse_args(argv)
    Server(config(host=args.host, port=args.port, fd=args.fd)).run()


if __name__ == "__main__":
    main()
