"""The server process's heap after start-up is kept out of the garbage collector's collections."""

import subprocess
import sys

import pytest

from config.tests.helpers import REPO, clean_env

PROBE = """
import gc, os, sys
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
before = gc.get_freeze_count()
from config.asgi import application
print(gc.get_threshold()[0], sys.getswitchinterval(), before, gc.get_freeze_count(), len(gc.get_objects()))
"""


@pytest.fixture(scope="module")
def server_process():
    """What a fresh interpreter that loads the ASGI application prints (PROBE), one run for both tests."""
    done = subprocess.run([sys.executable, "-c", PROBE], cwd=REPO, env=clean_env(), capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def test_loading_the_asgi_application_freezes_what_start_up_loaded(server_process):
    # A full collection of the start-up heap (Django, the openai models, Parla) took about 90 ms, a
    # pause of every learner's audio (docs/benchmarks.md, issue 14): it is frozen once loaded.
    before, frozen, tracked = map(int, server_process[-3:])
    assert before == 0 and frozen > 50_000  # the application's modules and their objects
    assert tracked < frozen // 10  # what a collection still walks: what came after


def test_the_server_process_collects_less_often_and_hands_the_gil_back_sooner(server_process):
    # Measured at 200 learners (config/asgi.py, docs/benchmarks.md): collections 2.5 s -> 0.6 s of a
    # run, and the event loop asks for the GIL the database thread holds after 0.1 ms, not 5.
    threshold, switch_interval = server_process[-5:-3]
    assert int(threshold) == 5_000 and float(switch_interval) == pytest.approx(0.0001)  # kept in whole us
