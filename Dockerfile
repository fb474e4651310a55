# Parla web image: Daphne serving HTTP and websockets (config.asgi). See docker-compose.yml.
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
CMD ["sh", "-c", "python manage.py migrate --noinput && exec daphne -b 0.0.0.0 -p 8000 config.asgi:application"]
