# Parla's image: Daphne serving HTTP and websockets (config.asgi); the compose file also runs it as the
# one-shot migration and the worker. The runtime only: the test tools (requirements-test.txt) stay out.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app

COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt

COPY . .
# Static files are collected at build time (WhiteNoise serves them); DEBUG here only lets the
# settings load without the production SECRET_KEY, which the container gets at run time.
RUN DEBUG=true python manage.py collectstatic --noinput -v 0

RUN useradd --create-home parla && chown -R parla /app
USER parla
EXPOSE 8000
# Daphne is PID 1 and receives SIGTERM itself: it drains (tutor/drain.py). No migration here: one
# process migrates before the web processes start (docker-compose.yml's `migrate`).
# The production server: Daphne, measured faster than Uvicorn here (README, "The server process");
# the drain takes its SIGTERM (tutor/drain.py). PID 1, no shell, so SIGTERM from `docker stop`
# reaches it. (`python -m tutor.serve` serves with Uvicorn instead, with the same limits and drain.)
CMD ["daphne", "-b", "0.0.0.0", "-p", "8000", "config.asgi:application"]
