"""`python manage.py realtime_check`: try the configured Realtime upstream once, as a placement uses it.

With OPENAI_API_KEY: the real API, with the deployment's models, voices, VAD, transcription and tool.
Without: the bundled simulator, started here (`--knob name=value` sets its knobs, e.g.
`--knob reject_transcription=*`), or the one PARLA_REALTIME_URL names. One row per check; exit status 1
when any check failed (tutor/realtime/check.py says what each does).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from config.openai_models import takes_reasoning
from tutor.realtime.check import CheckConfig, Checker, Row
from tutor.realtime.simulator import KnobError, RealtimeSimulator, SimulatorKnobs


class Command(BaseCommand):
    help = "Check the configured Realtime upstream (key, models, voices, VAD, transcription, tools): one row per check."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--language", default="es", help="the learners' target language to configure (default es)")
        parser.add_argument("--knob", action="append", default=[], metavar="NAME=VALUE",
                            help="a knob of the bundled simulator (only without OPENAI_API_KEY and PARLA_REALTIME_URL)")

    def handle(self, *args: Any, **options: Any) -> None:
        # The rows are the output; the client's own logs would interleave with them.
        logging.getLogger("tutor").setLevel(logging.WARNING)
        try:
            knobs = dict(knob.split("=", 1) for knob in options["knob"])
            simulator_knobs = SimulatorKnobs(pace=0.0).with_overrides(knobs, allow_server_only=True)
        except (KnobError, ValueError) as exc:
            raise CommandError(f"bad --knob: {exc}") from exc
        rows = asyncio.run(self._run(options["language"], simulator_knobs))
        width = max(len(row.name) for row in rows)
        for row in rows:
            line = f"{row.status:<8}{row.name:<{width}}  {row.detail}"
            self.stdout.write(self.style.SUCCESS(line) if row.ok else self.style.ERROR(line))
        failed = [row for row in rows if not row.ok]
        if failed:
            raise CommandError(f"{len(failed)} of {len(rows)} checks did not pass", returncode=1)
        self.stdout.write(f"all {len(rows)} checks ok")

    async def _run(self, language: str, knobs: SimulatorKnobs) -> list[Row]:
        simulator = None
        url, key = settings.PARLA_REALTIME_URL, settings.OPENAI_API_KEY or None
        if not key and not url:
            simulator = await RealtimeSimulator(knobs=knobs, port=0).start()
            url = simulator.url
        self.stdout.write(f"upstream: {'the OpenAI Realtime API' if key else 'simulator'} at {url}")
        model = settings.PARLA_REALTIME_MODEL
        config = CheckConfig(
            url=url, api_key=key, model=model, tutor_voice=settings.PARLA_TUTOR_VOICE,
            summary_voice=settings.PARLA_SUMMARY_VOICE, transcription_model=settings.PARLA_TRANSCRIPTION_MODEL,
            target_language=language,
            reasoning_effort=settings.PARLA_REASONING_EFFORT if takes_reasoning(model) else None,
            speed_beginner=settings.PARLA_SPEED_BEGINNER, speed_default=settings.PARLA_SPEED_DEFAULT,
            timeout=max(settings.PARLA_STEP_TIMEOUT, 10.0), reply_timeout=30.0,
        )
        try:
            return await Checker(config).run()
        finally:
            if simulator is not None:
                await simulator.stop()
