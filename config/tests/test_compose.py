"""docker-compose.yml, the Dockerfile and the proxy's configuration (there is no container engine here,
so they are checked as files): the services and their order, the health checks, the proxy's upstreams
and timeouts, no migration in the web command, and the environment agreeing with the settings and the
README. tutor/tests/test_proxy.py runs the same nginx configuration for real."""

import re
from urllib.parse import urlparse

import yaml

from config.tests.helpers import REPO
from config.tests.test_readme import config_table
from tutor.tests.live import production_command

COMPOSE = yaml.safe_load((REPO / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]
WEBS = sorted(name for name in SERVICES if re.fullmatch(r"web\d+", name))
WEB_ENV = SERVICES["web1"]["environment"]
NGINX_CONF = REPO / "deploy" / "nginx" / "parla.conf"


def exposed(service: str) -> set[int]:
    return {int(str(port).split("/")[0]) for port in SERVICES[service].get("expose", [])}


def dockerfile_cmd() -> list[str]:
    text = (REPO / "Dockerfile").read_text()
    match = re.search(r"^CMD (\[.*\])$", text, re.M)
    assert match, "Dockerfile has no exec-form CMD"
    return yaml.safe_load(match.group(1))  # a JSON array is YAML too


def nginx_upstreams(text: str) -> list[str]:
    block = re.search(r"upstream parla \{(.*?)\}", text, re.S)
    assert block, "no `upstream parla` block"
    return re.findall(r"^\s*server\s+(\S+?)[\s;]", block.group(1), re.M)


def nginx_location(text: str, path: str) -> str:
    match = re.search(r"location " + re.escape(path) + r" \{(.*?)\n    \}", text, re.S)
    assert match, f"no location {path}"
    return match.group(1)


def seconds(value: str) -> float:
    number, unit = re.fullmatch(r"(\d+)(s|m)?", str(value)).groups()
    return int(number) * (60 if unit == "m" else 1)


def test_services_and_their_order():
    assert set(SERVICES) == {"proxy", "migrate", "worker", "postgres", "redis", *WEBS}
    assert len(WEBS) >= 2
    assert SERVICES["postgres"]["image"].startswith("postgres:")
    assert SERVICES["redis"]["image"].startswith("redis:")
    assert SERVICES["proxy"]["image"].startswith("nginx:")  # the official image
    for web in WEBS:
        assert SERVICES[web]["depends_on"] == {
            "migrate": {"condition": "service_completed_successfully"},
            "postgres": {"condition": "service_healthy"},
            "redis": {"condition": "service_healthy"},
        }
    assert SERVICES["proxy"]["depends_on"] == {web: {"condition": "service_healthy"} for web in WEBS}
    assert SERVICES["migrate"]["restart"] == "no"  # one-shot


def test_migration_runs_once_not_in_the_web_command():
    assert SERVICES["migrate"]["command"] == ["python", "manage.py", "migrate", "--noinput"]
    cmd = dockerfile_cmd()
    assert cmd == ["daphne", "-b", "0.0.0.0", "-p", "8000", "config.asgi:application"]  # PID 1, no shell
    # The live tests' production server (the proxy, drain and deploy tests) is the image's.
    assert ["daphne", *production_command(8000)[2:]] == [part.replace("0.0.0.0", "127.0.0.1") for part in cmd]
    for web in WEBS:
        assert "command" not in SERVICES[web]  # the image's CMD
        assert SERVICES[web]["build"] == "."
        drain = float(re.search(r":-(\d+)\}", SERVICES[web]["environment"]["PARLA_DRAIN_SECONDS"]).group(1))
        assert seconds(SERVICES[web]["stop_grace_period"]) >= drain + 60  # the handovers finish before a kill
    assert "migrate" not in " ".join(cmd)


def test_worker_runs_the_scheduled_jobs():
    command = SERVICES["worker"]["command"]
    assert command[:3] == ["python", "manage.py", "run_worker"]
    assert "--grade-every" in command and "--audio-every" in command


def test_health_checks():
    assert "pg_isready" in " ".join(SERVICES["postgres"]["healthcheck"]["test"])
    assert SERVICES["redis"]["healthcheck"]["test"][-2:] == ["redis-cli", "ping"]
    for web in WEBS:
        check = " ".join(SERVICES[web]["healthcheck"]["test"])
        assert "http://127.0.0.1:8000/readyz" in check
    proxy_check = " ".join(SERVICES["proxy"]["healthcheck"]["test"])
    assert "/healthz" in proxy_check
    # the proxy answers its own /healthz
    assert 'return 200' in nginx_location(NGINX_CONF.read_text(), "= /healthz")


def test_the_proxy_config_is_mounted_and_routes_to_every_web_process():
    proxy = SERVICES["proxy"]
    assert proxy["volumes"] == ["./deploy/nginx/parla.conf:/etc/nginx/conf.d/default.conf:ro"]
    assert (REPO / proxy["volumes"][0].split(":")[0]).resolve() == NGINX_CONF.resolve()
    assert proxy["ports"] == ["8000:80"]
    text = NGINX_CONF.read_text()
    assert sorted(nginx_upstreams(text)) == [f"{web}:8000" for web in WEBS]
    for web in WEBS:
        assert 8000 in exposed(web) and "ports" not in SERVICES[web]  # only through the proxy
    assert re.search(r"^\s*listen 80;", text, re.M)


def test_the_proxy_upgrades_websockets_and_holds_them_past_a_placement():
    text = NGINX_CONF.read_text()
    ws = nginx_location(text, "/ws/")
    assert "proxy_pass http://parla;" in ws
    assert "proxy_set_header Upgrade $http_upgrade;" in ws
    assert "proxy_set_header Connection $connection_upgrade;" in ws
    assert "proxy_http_version 1.1;" in text
    for path in ("/ws/", "/"):  # in each location: one that sets a header inherits none from the server
        assert "proxy_set_header Host $http_host;" in nginx_location(text, path)  # the origin check: host and port
        assert "proxy_set_header X-Forwarded-Proto $scheme;" in nginx_location(text, path)
    placement = 20 * 60
    for directive in ("proxy_read_timeout", "proxy_send_timeout"):
        value = re.search(directive + r" (\S+);", ws).group(1)
        assert seconds(value) > placement


def test_metrics_are_per_process_and_not_published():
    for web in WEBS:
        env = SERVICES[web]["environment"]
        port = int(env["PARLA_METRICS_PORT"])
        assert port in exposed(web) and port != 8000
        assert env["PARLA_METRICS_ADDRESS"] == "0.0.0.0"
    assert all("9100" not in str(p) for p in SERVICES["proxy"]["ports"])
    assert "9100" not in NGINX_CONF.read_text()


def test_the_image_holds_the_runtime_only():
    text = (REPO / "Dockerfile").read_text()
    assert "pip install --no-cache-dir -r requirements.txt" in text
    instructions = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert not [line for line in instructions if "requirements-test" in line or "pytest" in line]
    runtime = (REPO / "requirements.txt").read_text().lower()
    for tool in ("pytest", "hypothesis", "playwright", "pyyaml"):
        assert tool not in runtime
        assert tool in (REPO / "requirements-test.txt").read_text().lower()
    assert "prometheus-client==" in runtime


def test_web_environment_is_settings_the_readme_lists():
    for web in WEBS:
        assert SERVICES[web]["environment"] == WEB_ENV
    assert set(WEB_ENV) <= set(config_table())
    for name in ("DATABASE_URL", "REDIS_URL", "OPENAI_API_KEY", "SECRET_KEY", "DEBUG", "ALLOWED_HOSTS"):
        assert name in WEB_ENV
    assert WEB_ENV["SECRET_KEY"].startswith("${SECRET_KEY:?")  # no key in the repo; compose demands one
    for service in ("migrate", "worker"):  # the same database and settings as the web processes
        env = SERVICES[service]["environment"]
        assert env["DATABASE_URL"] == WEB_ENV["DATABASE_URL"] and env["SECRET_KEY"] == WEB_ENV["SECRET_KEY"]


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
