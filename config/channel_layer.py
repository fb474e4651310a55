"""The Redis channel layer, configured for current redis-py and for Redis restarts.

Two problems this module exists for (issue 13):

- redis-py 8 gives every connection a 5 s `socket_timeout` by default, exactly the 5 s that
  channels-redis blocks on each receive (`BZPOPMIN ... 5`): the read times out before Redis answers
  and every consumer dies with `TimeoutError: Timeout reading from ...` within 5-10 s
  (django/channels_redis#422, "Explicit socket_timeout needed with redis 8"; redis/redis-py#4091).
  `redis_channel_layer()` sets the socket timeout well above the blocking receive.
- A Redis restart drops every connection and, without persistence, every group membership. redis-py
  reconnects by itself when given a retry policy; `ResilientRedisChannelLayer` keeps the receive loop
  alive through a longer outage instead of letting the error kill every consumer of the process, and
  adds this process's channels back to their groups as soon as it reconnects to a restarted server
  (so teachers' live views and the learners' supersede groups go on).

And one Python 3.11 problem: redis-py wraps every socket write and read in `asyncio.wait_for` when a
socket timeout is set (always, above), and 3.11's `wait_for` swallows a cancellation that arrives
just as the awaited write or read completes (python/cpython#86296, bpo-42130; fixed in 3.12, whose
`wait_for` is built on `asyncio.timeout`). A session task cancelled during a `group_send` (a live-view
announce) then ran on, and the learner's disconnect waited for it until Daphne killed the handler,
before the session's end was written. `keeps_cancellation` gives every layer call the 3.12 semantics,
and each blocking pop of `receive()` too: channels-redis loops on the pop until a message comes, so a
cancel swallowed as an empty pop returned blocked a consumer's receive for good (a handler Daphne killed
at shutdown instead of cancelling it).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections import defaultdict

from channels_redis.core import RedisChannelLayer
from channels_redis.utils import create_pool
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

logger = logging.getLogger(__name__)

BACKEND = "config.channel_layer.ResilientRedisChannelLayer"
# Above channels-redis's blocking receive (RedisChannelLayer.brpop_timeout, 5 s in 4.3.0), with
# room for a slow answer: a read that gets no reply for this long means the server is gone.
SOCKET_TIMEOUT = RedisChannelLayer.brpop_timeout + 10
# How long one command keeps retrying while Redis is unreachable (backoff 0.1, 0.2, 0.4, 0.8, 1 s):
# long enough for a restart, short enough that a learner's session is not held up by a send.
RETRIES = 5


def keeps_cancellation(method):
    """The layer call `method`, re-raising a cancellation of the calling task that was requested while
    it ran and swallowed below it (python/cpython#86296: the task's `cancelling()` count says so).

    Under `asyncio.timeout` around the call this also restores the timeout: the CancelledError raised
    here is the one the timeout turns into TimeoutError.
    """

    @functools.wraps(method)
    async def call(self, *args, **kwargs):
        task = asyncio.current_task()
        requested = task.cancelling() if task is not None else 0
        result = await method(self, *args, **kwargs)
        if task is not None and task.cancelling() > requested:
            raise asyncio.CancelledError
        return result

    return call


def connection_kwargs() -> dict:
    """redis-py connection options for the layer's pools (redis-py 8 defaults are not ours)."""
    return {
        "socket_timeout": SOCKET_TIMEOUT,
        "socket_connect_timeout": 2,
        "socket_keepalive": True,  # the OS notices a peer that vanished from an idle socket
        "health_check_interval": 30,  # PING a pooled connection idle this long before using it
        "retry": Retry(ExponentialWithJitterBackoff(cap=1.0, base=0.1), RETRIES),
        "retry_on_error": [RedisConnectionError, RedisTimeoutError],
    }


def redis_channel_layer(url: str, prefix: str) -> dict:
    """The CHANNEL_LAYERS entry for Redis at `url`."""
    return {
        "BACKEND": BACKEND,
        "CONFIG": {"hosts": [{"address": url, **connection_kwargs()}], "prefix": prefix},
    }


class ResilientRedisChannelLayer(RedisChannelLayer):
    """channels-redis's layer that outlives a Redis restart.

    - The blocking receive retries until Redis is back instead of raising into every consumer.
    - Each new connection reads the server's `run_id`; when it changed (the server restarted), the
      group memberships of this process's channels are written again before the connection is used.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._local_groups: dict[str, set[str]] = defaultdict(set)
        self._run_ids: dict[int, bytes] = {}
        self._receive_failing = False

    # --- connections -----------------------------------------------------------------------

    def create_pool(self, index):
        return create_pool({**self.hosts[index], "redis_connect_func": functools.partial(self._on_connect, index)})

    async def _on_connect(self, index: int, connection) -> None:
        await connection.on_connect()
        await connection.send_command("INFO", "server")
        info = await connection.read_response()
        info = info if isinstance(info, bytes) else str(info).encode()  # RESP2 bulk string, or RESP3 text
        run_id = next((line.split(b":", 1)[1].strip() for line in info.splitlines() if line.startswith(b"run_id:")), b"")
        previous = self._run_ids.get(index)
        self._run_ids[index] = run_id
        if previous is not None and previous != run_id:
            await self._restore_groups(index, connection)

    async def _restore_groups(self, index: int, connection) -> None:
        """Write this process's group memberships on shard `index` again, on `connection`."""
        commands = []
        for group, channels in self._local_groups.items():
            if channels and self.consistent_hash(group) == index:
                key = self._group_key(group)
                now = time.time()
                commands.append(["ZADD", key, *[part for channel in channels for part in (now, channel)]])
                commands.append(["EXPIRE", key, self.group_expiry])
        if commands:
            await connection.send_packed_command(connection.pack_commands(commands), check_health=False)
            for _ in commands:
                await connection.read_response()
        logger.warning(
            "redis restarted: group memberships restored",
            extra={"shard": index, "groups": len(commands) // 2, "prefix": self.prefix},
        )

    # --- every call the consumers make keeps their cancellation (keeps_cancellation) ---------

    send = keeps_cancellation(RedisChannelLayer.send)
    receive = keeps_cancellation(RedisChannelLayer.receive)
    group_send = keeps_cancellation(RedisChannelLayer.group_send)

    # --- groups: remember this process's memberships -------------------------------------

    @keeps_cancellation
    async def group_add(self, group, channel):
        await super().group_add(group, channel)
        self._local_groups[group].add(channel)

    @keeps_cancellation
    async def group_discard(self, group, channel):
        members = self._local_groups.get(group)
        if members is not None:  # first: a channel that leaves is never restored, even if Redis is down
            members.discard(channel)
            if not members:
                del self._local_groups[group]
        await super().group_discard(group, channel)

    # --- receive: outlive an outage -----------------------------------------------------------

    @keeps_cancellation  # channels-redis loops on this until a message comes: a swallowed cancel would block for good
    async def _brpop_with_clean(self, index, channel, timeout):
        try:
            member = await super()._brpop_with_clean(index, channel, timeout)
        except (RedisConnectionError, RedisTimeoutError) as error:
            # redis-py already retried with backoff; `receive_single` calls again on None, so the
            # consumers keep waiting for Redis to come back rather than closing with 1011.
            if not self._receive_failing:
                logger.warning("redis unreachable: channel layer receive retrying", extra={"shard": index, "error": str(error)})
            self._receive_failing = True
            return None
        if self._receive_failing:
            self._receive_failing = False
            logger.info("redis reachable again: channel layer receive resumed", extra={"shard": index})
        return member
