"""Helpers for tests that look at the project from outside: subprocesses, the README, the settings."""

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SETTINGS_FILE = REPO / "config" / "settings.py"
README = REPO / "README.md"
ENV_READERS = {"env", "env_bool", "env_int", "env_float", "env_list"}


def settings_env_calls() -> dict[str, ast.expr]:
    """Every `env*("NAME", default)` call in config/settings.py: NAME -> the default's AST."""
    calls = {}
    for node in ast.walk(ast.parse(SETTINGS_FILE.read_text())):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in ENV_READERS
            and node.args
            and isinstance(node.args[0], ast.Constant)
        ):
            calls[node.args[0].value] = node.args[1] if len(node.args) > 1 else None
    return calls


def clean_env(**overrides: str) -> dict[str, str]:
    """The current environment without any variable the settings read, plus `overrides`."""
    env = {k: v for k, v in os.environ.items() if k not in settings_env_calls()}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    env.update(overrides)
    return env


def run_python(code: str, env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env={**env, "DJANGO_SETTINGS_MODULE": "config.settings"},
        capture_output=True, text=True, timeout=timeout,
    )


def run_manage(*args: str, env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=REPO, env=env, capture_output=True, text=True,
        timeout=timeout,
    )


def read_settings(env: dict[str, str], *names: str) -> dict:
    """Import config.settings in a fresh interpreter under `env` and return the named settings."""
    code = (
        "import json\nfrom django.conf import settings\n"
        f"print(json.dumps({{n: getattr(settings, n) for n in {list(names)!r}}}, default=str))"
    )
    result = run_python(code, env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])
