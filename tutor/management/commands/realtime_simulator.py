"""`python manage.py realtime_simulator --port 8765`: run the bundled Realtime simulator standalone."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from tutor.realtime.simulator import KnobError, RealtimeSimulator, SimulatorKnobs
from tutor.realtime.simulator.knobs import knob_base_type


def knob_flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def knobs_from_options(options: dict[str, Any]) -> SimulatorKnobs:
    """SimulatorKnobs from parsed command options (only the flags that were given)."""
    given = {name: options[name] for name in SimulatorKnobs.field_names() if options.get(name) is not None}
    return SimulatorKnobs().with_overrides(given, allow_server_only=True)


class Command(BaseCommand):
    help = (
        "Run the bundled OpenAI Realtime (GA) simulator until Ctrl-C. Every knob can also be set "
        "per connection in the query string, e.g. ?model=gpt-realtime-2.1&pace=0&true_level=B1."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1)")
        parser.add_argument("--port", type=int, default=8765, help="port to listen on (default 8765)")
        for name in SimulatorKnobs.field_names():
            base, optional = knob_base_type(name)
            default = getattr(SimulatorKnobs(), name)
            hint = f"{base.__name__}{' or none' if optional else ''}; default {default}"
            parser.add_argument(knob_flag(name), dest=name, metavar=base.__name__.upper(), help=hint)

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            knobs = knobs_from_options(options)
        except KnobError as exc:
            raise CommandError(str(exc)) from exc
        logging.getLogger("tutor.realtime.simulator").setLevel(logging.INFO)
        simulator = RealtimeSimulator(knobs=knobs, host=options["host"], port=options["port"])
        self.stdout.write(f"Realtime simulator on ws://{options['host']}:{options['port']}/v1/realtime (Ctrl-C stops)")
        try:
            asyncio.run(simulator.serve_forever())
        except KeyboardInterrupt:
            self.stdout.write("Realtime simulator stopped.")
