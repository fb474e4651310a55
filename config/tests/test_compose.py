"""docker-compose.yml (there is no Docker engine here): its services, ports and environment agree
with the settings and the README."""

import re
from urllib.parse import urlparse

import yaml

from config.tests.helpers import REPO
from config.tests.test_readme import config_table

COMPOSE = yaml.safe_load((REPO / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]
WEB_ENV = SERVICES["web"]["environment"]


def exposed(service: str) -> set[int]:
    return {int(str(port).split("/")[0]) for port in SERVICES[service].get("expose", [])}


def dockerfile_cmd() -> list[str]:
    text = (REPO / "Dockerfile").read_text()
    match = re.search(r"^CMD (\[.*\])$", text, re.M)
    assert match, "Dockerfile has no exec-form CMD"
    return yaml.safe_load(match.group(1))  # a JSON array is YAML too


def test_services_and_health_checks():
    assert set(SERVICES) == {"web", "postgres", "redis"}
    assert SERVICES["postgres"]["image"].startswith("postgres:")
    assert SERVICES["redis"]["image"].startswith("redis:")
    assert "pg_isready" in " ".join(SERVICES["postgres"]["healthcheck"]["test"])
    assert SERVICES["redis"]["healthcheck"]["test"][-2:] == ["redis-cli", "ping"]
    assert SERVICES["web"]["depends_on"] == {
        "postgres": {"condition": "service_healthy"},
        "redis": {"condition": "service_healthy"},
    }


def test_web_is_daphne_on_the_published_port():
    assert SERVICES["web"]["build"] == "."
    shell, flag, command = dockerfile_cmd()
    assert (shell, flag) == ("sh", "-c")
    assert "command" not in SERVICES["web"]  # the image's CMD is the one command
    assert "migrate" in command
    assert re.search(r"exec daphne -b 0\.0\.0\.0 -p 8000 config\.asgi:application$", command)
    assert SERVICES["web"]["ports"] == ["8000:8000"]


def test_web_environment_is_settings_the_readme_lists():
    assert set(WEB_ENV) <= set(config_table())
    for name in ("DATABASE_URL", "REDIS_URL", "OPENAI_API_KEY", "SECRET_KEY", "DEBUG", "ALLOWED_HOSTS"):
        assert name in WEB_ENV
    assert WEB_ENV["SECRET_KEY"].startswith("${SECRET_KEY:?")  # no key in the repo; compose demands one


def test_database_url_points_at_the_postgres_service():
    url = urlparse(WEB_ENV["DATABASE_URL"])
    pg = SERVICES["postgres"]["environment"]
    assert url.scheme in ("postgres", "postgresql")
    assert url.hostname == "postgres" and url.port in exposed("postgres")
    assert (url.username, url.password, url.path.lstrip("/")) == (
        pg["POSTGRES_USER"], pg["POSTGRES_PASSWORD"], pg["POSTGRES_DB"],
    )
    assert f"-U {pg['POSTGRES_USER']} -d {pg['POSTGRES_DB']}" in SERVICES["postgres"]["healthcheck"]["test"][-1]


def test_redis_url_points_at_the_redis_service():
    url = urlparse(WEB_ENV["REDIS_URL"])
    assert url.scheme == "redis"
    assert url.hostname == "redis" and url.port in exposed("redis")
