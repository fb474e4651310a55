"""`manage.py realtime_check` (issue 25) against the bundled simulator: every row ok; a transcription
configuration the API refuses shows as the failing row with the API's own text, and a non-zero exit."""

from __future__ import annotations

import io

import pytest
from django.core.management import CommandError, call_command

CHECKS = (
    "tutor: connect", "tutor: configure", "tutor: level update", "tutor: one short spoken reply",
    "tutor: cancel with nothing active", "tutor: truncate a played item", "tutor: delete an item",
    "narrator: connect", "narrator: configure", "narrator: speak a summary",
)


@pytest.fixture
def without_key(settings):
    settings.OPENAI_API_KEY = ""
    settings.PARLA_REALTIME_URL = ""  # the command starts the bundled simulator


def rows(output: str) -> dict[str, str]:
    """check name (as in CHECKS) -> its status word."""
    found = {}
    for line in output.splitlines():
        status, _, rest = line.partition(" ")
        name = next((check for check in CHECKS if rest.strip().startswith(check)), None)
        if name:
            found[name] = status
    return found


def test_against_the_simulator_every_row_is_ok(without_key):
    out = io.StringIO()
    call_command("realtime_check", stdout=out)
    assert rows(out.getvalue()) == {check: "ok" for check in CHECKS}, out.getvalue()
    assert "simulator" in out.getvalue() and "all 10 checks ok" in out.getvalue()


def test_a_refused_transcription_is_the_failing_row_with_the_apis_text_and_the_exit_is_non_zero(without_key):
    out = io.StringIO()
    with pytest.raises(CommandError) as failed:
        call_command("realtime_check", "--knob", "reject_transcription=*", stdout=out)
    assert failed.value.returncode == 1
    found = rows(out.getvalue())
    assert found["tutor: connect"] == "ok" and found["tutor: configure"] == "FAILED"
    assert {found[c] for c in CHECKS if c.startswith("narrator")} == {"ok"}  # the narrator has no transcription
    line = next(line for line in out.getvalue().splitlines() if "tutor: configure" in line)
    assert "invalid_value: Turn detection is not supported for this transcription model." in line


def test_a_reply_without_audio_fails_its_row(without_key):
    out = io.StringIO()
    with pytest.raises(CommandError):
        call_command("realtime_check", "--knob", "silent_responses=1", stdout=out)
    line = next(line for line in out.getvalue().splitlines() if "tutor: one short spoken reply" in line)
    assert line.startswith("FAILED") and "completed without the audio it was asked for" in line
    assert rows(out.getvalue())["tutor: delete an item"] == "ok"  # the rest of the session still checked
