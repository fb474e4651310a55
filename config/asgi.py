"""ASGI entry point: HTTP through Django, websockets through Channels."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
# Set up Django (apps, settings) before importing anything that touches models: the consumers
# import the ORM, so they must come after this call.
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from config.websocket_origin import SameOriginValidator  # noqa: E402
from tutor import drain  # noqa: E402
from tutor.backpressure import TransportMiddleware  # noqa: E402
from tutor.health import HealthEndpoints  # noqa: E402
from tutor.loopwatch import LoopWatch  # noqa: E402
from tutor.metrics import MetricsServer  # noqa: E402
from tutor.recovery import Sweeper  # noqa: E402
from tutor.routing import websocket_urlpatterns  # noqa: E402
from tutor.serving import Lifespan, start_with_daphne  # noqa: E402

# While this process serves (tutor/serving.py says how, under Daphne and under a server that speaks
# ASGI lifespan): crash recovery, which ends the sessions of dead processes and grades what they left,
# the loop watch, which logs the event loop's stalls, and the metrics port (tutor/metrics.py), and the
# drain on SIGTERM (tutor/drain.py: it takes over Twisted's signal handling under Daphne; under
# Uvicorn, tutor/serve.py's server hands SIGTERM to it).
services = (Sweeper(), LoopWatch(), MetricsServer(), drain.current)
start_with_daphne(*services)

application = ProtocolTypeRouter(
    {
        # /healthz and /readyz answered before Django's middleware (tutor/health.py says why).
        "http": HealthEndpoints(django_asgi_app),
        # Origin must be this server's own, port included (config/websocket_origin.py). Outermost, the
        # connection's transport (Daphne's or Uvicorn's) for the send queue's limit (tutor/backpressure.py).
        "websocket": TransportMiddleware(SameOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns)))),
        # Sent by Uvicorn (tutor/serve.py), never by Daphne.
        "lifespan": Lifespan(*services),
    }
)

import gc  # noqa: E402
import sys  # noqa: E402

# What is loaded by now (Django, the openai package's models, Parla) lives as long as the process:
# gc.freeze() moves it to the permanent generation, out of every later collection (Python's gc
# docs). A full collection of it took about 90 ms here, and a collection stops every learner's audio:
# the load benchmark measured pauses of 120-150 ms at 100 learners (docs/benchmarks.md, issue 14).
gc.freeze()

# The youngest generation is collected after 5,000 net allocations, not 700 (gc.set_threshold; the
# defaults are 700, 10, 10: docs.python.org/3.11/library/gc.html), so every generation is collected
# about 2-7x less often. Most objects of a relayed frame die young, freed by reference counting
# before a collection would look at them. At 200 learners (bench/load.py with gc.callbacks timing each
# collection): 1,102 collections took 2.5 s of the run, up to 100 ms each; 493 took 0.6 s.
gc.set_threshold(5_000, 10, 10)

# The event loop relays every learner's audio; the one other busy thread is Channels' database thread.
# The loop gives up the GIL at every system call (each socket send and receive, each epoll change
# Twisted makes per message, each websocket mask's random bytes, each numpy or cffi call), and while
# the database thread runs Python it takes the GIL at each of them; the loop gets it back only after
# the switch interval (docs.python.org/3.11/library/sys.html#sys.setswitchinterval: 5 ms by default),
# when it asks the holder to let go. That is the convoy behind the load ladder's tail: a stall
# watchdog in the server at 200 learners saw 437 pauses of the loop over 30 ms (p50 61 ms) in one
# run, the loop thread neither on a CPU nor on a run queue for half of their time, its stack in a
# system call, the database thread running queries. bench/hotpath.py measures it in one process: a
# socket send and receive take 2-3 us alone and 225-306 us beside a thread running Python at
# 1 ms, 41-57 us at 0.1 ms (0.2 ms varied 37-133 us). At 200 learners on 2 cores shared
# with the benchmark's helpers, tutor audio p99 added: median +320 ms in four runs at 1 ms, +217 ms
# in four at 0.1 ms (one of them +793 ms: the full machine varies; docs/benchmarks.md).
sys.setswitchinterval(0.0001)
