"""Layering: the realtime layer (client, tracker, relay, wire, simulator...) runs without Django."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

# Imports every module under tutor/realtime/ in order and reports the first that brought Django in
# (a fresh interpreter: the test process itself has Django loaded by pytest-django).
# Modules are listed from the files, since listing them with pkgutil would import the packages.
PROBE = """
import importlib, json, pathlib, sys
files = sorted(pathlib.Path("tutor/realtime").rglob("*.py"))
modules = [".".join(f.with_suffix("").parts).removesuffix(".__init__") for f in files]
offender = None
for name in modules:
    importlib.import_module(name)
    if offender is None and "django" in sys.modules:
        offender = name
print(json.dumps({"modules": modules, "offender": offender, "django": "django" in sys.modules}))
"""


def test_realtime_layer_imports_without_django():
    done = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=REPO, capture_output=True, text=True, timeout=120, check=True
    )
    report = json.loads(done.stdout.strip().splitlines()[-1])
    # Every part of the layer was imported, the simulator's included.
    assert {
        "tutor.realtime.client",
        "tutor.realtime.tracker",
        "tutor.realtime.relay",
        "tutor.realtime.simulator.session",
        "tutor.realtime.simulator.responses",
        "tutor.realtime.simulator.server",
    } <= set(report["modules"])
    assert report["offender"] is None, f"{report['offender']} imports Django"
    assert not report["django"]
