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
from tutor.backpressure import TransportMiddleware  # noqa: E402
from tutor.routing import websocket_urlpatterns  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        # Origin must be this server's own, port included (config/websocket_origin.py). Outermost, the
        # connection's Daphne transport for the send queue's limit (tutor/backpressure.py).
        "websocket": TransportMiddleware(SameOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns)))),
    }
)

from tutor.recovery import start_with_daphne  # noqa: E402

# Crash recovery: once this Daphne process serves, and then periodically, end the sessions of dead
# processes and grade what they left (tutor/recovery.py says why this, and not ASGI lifespan).
start_with_daphne()

import gc  # noqa: E402

# What is loaded by now (Django, the openai package's models, Parla) lives as long as the process:
# gc.freeze() moves it to the permanent generation, out of every later collection (Python's gc
# docs). A full collection of it took about 90 ms here, and a collection stops every learner's audio:
# the load benchmark measured pauses of 120-150 ms at 100 learners (docs/benchmarks.md, issue 14).
gc.freeze()
