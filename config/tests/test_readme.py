"""The README is part of the product: its configuration table and commands must match the code."""

import ast
import re

from config.tests.helpers import README, REPO, settings_env_calls


def section(title: str) -> str:
    text = README.read_text()
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", text, re.S | re.M)
    assert match, f"README has no '## {title}' section"
    return match.group(1)


def config_table() -> dict[str, str]:
    """Variable -> its Default cell, from the rows of the configuration table."""
    rows = {}
    for line in section("Configuration").splitlines():
        match = re.match(r"\|\s*`([A-Z0-9_]+)`\s*\|([^|]*)\|", line)
        if match:
            assert match.group(1) not in rows, f"{match.group(1)} is listed twice"
            rows[match.group(1)] = match.group(2).strip()
    return rows


def commands(title: str) -> list[str]:
    """Each fenced shell block of a section, as its command."""
    blocks = re.findall(r"```sh\n(.*?)```", section(title), re.S)
    return [block.strip() for block in blocks]


def test_configuration_table_lists_exactly_the_variables_settings_read():
    read = set(settings_env_calls())
    listed = set(config_table())
    assert read - listed == set(), "read in config/settings.py but missing from the README table"
    assert listed - read == set(), "in the README table but not read in config/settings.py"


def test_configuration_table_defaults_match_literal_defaults():
    table = config_table()
    for name, default in settings_env_calls().items():
        try:
            value = ast.literal_eval(default)
        except ValueError:
            continue  # computed default (depends on DEBUG or the API key): described in words
        cell = table[name]
        if value in ("", []):
            assert "empty" in cell, f"{name}: default is empty, README says {cell!r}"
        elif isinstance(value, bool):
            assert f"`{str(value).lower()}`" in cell, f"{name}: default {value}, README says {cell!r}"
        else:
            assert f"`{value}`" in cell, f"{name}: default {value!r}, README says {cell!r}"


def test_readme_has_exactly_two_setup_commands():
    assert commands("Set up and run") == ["scripts/run", "scripts/test"]
    for command in commands("Set up and run"):
        script = REPO / command
        assert script.is_file() and script.stat().st_mode & 0o111, f"{command} is not an executable file"


def test_ci_runs_the_readme_test_command():
    test_command = commands("Set up and run")[1]
    lines = [line.strip() for line in (REPO / ".ci" / "run").read_text().splitlines()]
    assert lines[0] == "#!/usr/bin/env bash"
    assert "set -euo pipefail" in lines
    assert lines[-1] == f"exec {test_command}"


def test_readme_documents_the_websocket_close_codes():
    from tutor.realtime.wire import CLOSE_FORBIDDEN, CLOSE_NOT_AUTHENTICATED

    text = README.read_text()
    assert f"| {CLOSE_NOT_AUTHENTICATED} | not logged in" in text
    assert f"| {CLOSE_FORBIDDEN} | logged in, but the user has no learner profile" in text


def test_readme_has_the_sections_others_fill_in():
    for title in ("Architecture", "Browser wire protocol", "Benchmarks", "Dependencies"):
        assert section(title).strip()


def test_every_requirement_is_explained_in_dependencies():
    explained = section("Dependencies").lower()
    lines = [*(REPO / "requirements.txt").read_text().splitlines(), *(REPO / "requirements-test.txt").read_text().splitlines()]
    for line in lines:
        line = line.split("#")[0].strip()
        if line:
            name = re.split(r"[\[=<>~ ]", line)[0].lower()
            assert f"{name}" in explained, f"{name} is not explained in the README's Dependencies"
