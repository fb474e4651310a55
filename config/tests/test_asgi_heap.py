"""The server process's heap after start-up is kept out of the garbage collector's collections."""

import subprocess
import sys

from config.tests.helpers import REPO, clean_env

PROBE = """
import gc, os
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
before = gc.get_freeze_count()
from config.asgi import application
print(before, gc.get_freeze_count(), len(gc.get_objects()))
"""


def test_loading_the_asgi_application_freezes_what_start_up_loaded():
    # A full collection of the start-up heap (Django, the openai models, Parla) took about 90 ms, a
    # pause of every learner's audio (docs/benchmarks.md, issue 14): it is frozen once loaded.
    done = subprocess.run([sys.executable, "-c", PROBE], cwd=REPO, env=clean_env(), capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    before, frozen, tracked = map(int, done.stdout.split()[-3:])
    assert before == 0 and frozen > 50_000  # the application's modules and their objects
    assert tracked < frozen // 10  # what a collection still walks: what came after
