"""The real services, when configured: PostgreSQL via DATABASE_URL and the Redis channel layer via
REDIS_URL. scripts/test sets both when the services are reachable, and always under CI=true, where
a missing service is a failure rather than a skip."""

import os
import uuid
from urllib.parse import parse_qs

import pytest
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.db import connection

pytestmark = pytest.mark.services
IN_CI = os.environ.get("CI", "").lower() == "true"


def require_service(variable: str, scheme: str) -> None:
    if os.environ.get(variable, "").startswith(scheme):
        return
    if IN_CI:
        pytest.fail(f"{variable} is not a {scheme} URL under CI=true: scripts/test must set it")
    pytest.skip(f"{variable} is not set to a {scheme} URL (scripts/test sets it when the service is up)")


# --- PostgreSQL --------------------------------------------------------------------------------


@pytest.mark.django_db
def test_database_is_postgresql_through_psycopg3():
    require_service("DATABASE_URL", "postgres")
    assert connection.vendor == "postgresql"
    assert connection.Database.__name__ == "psycopg"
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_database(), version()")
        name, version = cursor.fetchone()
    assert name.startswith("test_") and version.startswith("PostgreSQL")


# --- Redis channel layer -------------------------------------------------------------------------


@pytest.fixture
async def redis_layer():
    require_service("REDIS_URL", "redis")
    from channels_redis.core import RedisChannelLayer

    layer = get_channel_layer()
    assert isinstance(layer, RedisChannelLayer)
    try:
        yield layer
    finally:
        await layer.close_pools()


async def test_redis_layer_send_and_receive(redis_layer):
    channel = await redis_layer.new_channel()
    await redis_layer.send(channel, {"type": "parla.ping", "text": "hola"})
    assert await redis_layer.receive(channel) == {"type": "parla.ping", "text": "hola"}


class GroupMember(AsyncJsonWebsocketConsumer):
    """Joins the group named in ?group=, reports its channel name, echoes `parla.ping` events."""

    async def connect(self):
        self.group = parse_qs(self.scope["query_string"].decode())["group"][0]
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()
        await self.send_json({"channel": self.channel_name})

    async def disconnect(self, code):
        await self.channel_layer.group_discard(self.group, self.channel_name)

    async def parla_ping(self, event):
        await self.send_json({"got": event["text"], "me": self.channel_name})


# Channels' consumers close stale database connections around each message (channels.db
# aclose_old_connections, in its dispatch): on a worker thread that held one from an earlier test, that
# touches the database.
@pytest.mark.django_db
async def test_redis_layer_direct_send_and_group_send_across_two_consumers(redis_layer):
    group = f"parla-test-{uuid.uuid4().hex}"  # unique: other runs may share this Redis
    first = WebsocketCommunicator(GroupMember.as_asgi(), f"/?group={group}")
    second = WebsocketCommunicator(GroupMember.as_asgi(), f"/?group={group}")
    try:
        assert (await first.connect())[0] and (await second.connect())[0]
        first_channel = (await first.receive_json_from())["channel"]
        second_channel = (await second.receive_json_from())["channel"]
        assert first_channel != second_channel

        # A message to one consumer's channel reaches that consumer only.
        await redis_layer.send(second_channel, {"type": "parla.ping", "text": "solo tú"})
        assert await second.receive_json_from(timeout=5) == {"got": "solo tú", "me": second_channel}
        assert await first.receive_nothing(timeout=0.3)

        # A group message reaches both.
        await redis_layer.group_send(group, {"type": "parla.ping", "text": "todos"})
        assert await first.receive_json_from(timeout=5) == {"got": "todos", "me": first_channel}
        assert await second.receive_json_from(timeout=5) == {"got": "todos", "me": second_channel}
    finally:
        await first.disconnect()
        await second.disconnect()

    # After leaving, the group is empty: a group message reaches nobody (and does not fail).
    await redis_layer.group_send(group, {"type": "parla.ping", "text": "nadie"})
