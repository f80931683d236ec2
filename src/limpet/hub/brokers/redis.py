"""The Redis broker: Redis Streams for history, one Lua script per write for atomic offsets,
routed pub/sub (one Redis channel per hub channel) for live fan-out.

Keys of a channel share a hash tag, ``{prefix}:{<channel>}:*``, so a Redis Cluster keeps them on
one slot and the scripts stay single-slot:

    meta      HASH   e = epoch, o = last offset (one key, so they can only vanish together);
                     PEXPIRE = the channel's state TTL (``state_ttl``), renewed by every publish,
                     history read and heartbeat of a replica with subscribers: a channel that
                     was only read, or subscribed and left, leaves nothing behind for ever
    stream    STREAM entries with id ``<offset>-0``, fields d = data (JSON), t = ms timestamp,
                     trimmed to the history size; PEXPIRE = history ttl
    idem:<k>  STRING "<epoch>:<offset>" of the first publish with idempotency key k, PX window
    presence  ZSET   member -> expiry (ms); presence:info HASH member -> JSON info
    live      pub/sub channel carrying encoded ``Message`` / ``PresenceEvent`` records

The epoch changes only when ``meta`` is missing (a Redis restarted without persistence, a flush,
an eviction): the script then starts a new epoch at offset 0 and drops any stale stream.
PUBLISH happens inside the publish script, so the live order is the offset order.

The live subscriber runs on its own connection with redis-py's silent retries turned off: any
error, or a PING left unanswered for two health intervals (a half-open TCP connection, a subscriber
a proxy or Redis dropped without a word), replaces the connection, re-subscribes every channel
and asks the hub to re-sync its subscriptions from history.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import msgspec
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff, NoBackoff
from redis.exceptions import NoScriptError, RedisClusterException, RedisError, ResponseError

from limpet.errors import BrokerError
from limpet.hub.brokers.base import Broker, BrokerOptions, EventQueue, JoinRead, Members, now_ms
from limpet.hub.brokers.redis_events import RedisEventQueue
from limpet.hub.channels import (
    Envelope,
    HistoryPage,
    Message,
    Position,
    decode_envelope,
    encode_envelope,
    new_epoch,
)
from limpet.hub.channels.history import trim_expired
from limpet.hub.channels.records import decode_data, decode_message_head, encode_data
from limpet.hub.events.records import occupancy
from limpet.tlsverify import strict_hint

log = logging.getLogger("limpet.hub.redis")

#: subscribes per join transaction (join_and_read): a round trip's worth, not a storm's
JOIN_BATCH = 128
#: the answers of one subscriber's commands (presence 4, the announce, the history read)
_JOIN_ANSWERS = 6

# With ``fence`` (clusters and Sentinel: replicated, failover possible), meta also keeps ``r``, the
# replication ID of the master that wrote it. A promoted replica gets a new replication ID, and
# asynchronous replication may have lost the old master's last acknowledged writes, which no
# surviving node can know about: so the first script on a new master starts a new epoch, and
# subscribers are told ``recovered: false`` instead of seeing reused offsets. A master restarted
# from its own files also gets a new replication ID (it may have lost its last writes): the same.
#
# fence '2' (Redis Cluster) also keeps ``n``, the cluster node ID of the writer, because
# resharding moves a channel's keys to another master with MIGRATE, complete as of the move: the
# new owner must adopt them, not wipe a whole history. The keys were moved, not failed over,
# when the writer is another node, this node was not its replica (``master_replid2``, the ID a
# promoted replica inherits, is not the stored one), and the writer is still a healthy master.
# Anything else starts a new epoch: a needless "recovered: false" is announced, a reused offset
# would not be.
_ENSURE_EPOCH = """
local epoch = redis.call('HGET', KEYS[1], 'e')
local rid = ''
if fence ~= '0' then
  local info = redis.call('INFO', 'replication')
  rid = string.match(info, 'master_replid:(%x+)') or ''
  local was = redis.call('HGET', KEYS[1], 'r')
  if epoch and was ~= rid then
    local moved = false
    local writer = redis.call('HGET', KEYS[1], 'n')
    if fence == '2' and writer and writer ~= redis.call('CLUSTER', 'MYID')
        and string.match(info, 'master_replid2:(%x+)') ~= was then
      for line in string.gmatch(redis.call('CLUSTER', 'NODES'), '[^\\n]+') do
        local id, flags = string.match(line, '^(%x+) %S+ (%S+)')
        if id == writer then
          moved = string.find(flags, 'master', 1, true) ~= nil
            and string.find(flags, 'fail', 1, true) == nil
        end
      end
    end
    if moved then
      redis.call('HSET', KEYS[1], 'r', rid, 'n', redis.call('CLUSTER', 'MYID'))
    else
      epoch = false
    end
  end
end
if not epoch then
  epoch = ARGV[1]
  redis.call('HSET', KEYS[1], 'e', epoch, 'o', 0, 'r', rid)
  if fence == '2' then redis.call('HSET', KEYS[1], 'n', redis.call('CLUSTER', 'MYID')) end
  redis.call('DEL', KEYS[2])
end
"""

# KEYS: meta, stream, idem (or meta when none), live
# ARGV: new epoch, data JSON, ts ms, history size, history ttl ms, idem ttl ms, has idem, channel JSON,
#       publish command (PUBLISH, or SPUBLISH: sharded, Redis 7), fence, state ttl ms
PUBLISH = (
    "local fence = ARGV[10]\n"
    + _ENSURE_EPOCH
    + """
redis.call('PEXPIRE', KEYS[1], ARGV[11])
if ARGV[7] == '1' then
  local seen = redis.call('GET', KEYS[3])
  if seen then
    local e, o = string.match(seen, '^(.*):(%d+)$')
    if e == epoch then return {epoch, tonumber(o), 1} end
  end
end
local offset = redis.call('HINCRBY', KEYS[1], 'o', 1)
if tonumber(ARGV[4]) > 0 then
  redis.call('XADD', KEYS[2], 'MAXLEN', ARGV[4], offset .. '-0', 'd', ARGV[2], 't', ARGV[3])
  redis.call('PEXPIRE', KEYS[2], ARGV[5])
end
if ARGV[7] == '1' then
  redis.call('SET', KEYS[3], epoch .. ':' .. offset, 'PX', ARGV[6])
end
redis.call(ARGV[9], KEYS[4], '{"kind":"message","channel":' .. ARGV[8] .. ',"epoch":"' .. epoch
  .. '","offset":' .. offset .. ',"data":' .. ARGV[2] .. ',"ts":' .. ARGV[3] .. ',"v":1}')
return {epoch, offset, 0}
"""
)

# KEYS: meta, stream; ARGV: new epoch, since (-1: position only), limit, fence, state ttl ms
HISTORY = (
    "local fence = ARGV[4]\n"
    + _ENSURE_EPOCH
    + """
redis.call('PEXPIRE', KEYS[1], ARGV[5])
local offset = tonumber(redis.call('HGET', KEYS[1], 'o'))
local since = tonumber(ARGV[2])
local entries = {}
if since >= 0 and tonumber(ARGV[3]) > 0 and offset > since then
  entries = redis.call('XRANGE', KEYS[2], (since + 1) .. '-0', '+', 'COUNT', ARGV[3])
end
return {epoch, offset, entries}
"""
)

# KEYS: presence, presence:info; ARGV: now ms
PRESENCE = """
local gone = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if #gone > 0 then
  redis.call('ZREM', KEYS[1], unpack(gone))
  redis.call('HDEL', KEYS[2], unpack(gone))
end
local members = redis.call('ZRANGE', KEYS[1], 0, -1)
if #members == 0 then return {} end
local infos = redis.call('HMGET', KEYS[2], unpack(members))
local out = {}
for i, m in ipairs(members) do out[#out + 1] = m; out[#out + 1] = infos[i] or '{}' end
return out
"""

_CONTROL = "control"
#: pub/sub message types, sharded (Redis 7) and plain, as one vocabulary
_KINDS: dict[Any, str] = {
    b"pong": "pong",
    "ssubscribe": "subscribe",
    "smessage": "message",
    b"ssubscribe": "subscribe",
    b"smessage": "message",
    b"sunsubscribe": "sunsubscribe",
}


async def _as_is(response: Any) -> Any:
    return response


#: a live record as redis-py reads it: [kind, channel, data]
_RECORDS = (b"message", b"smessage")


#: longest wait for the answers of one publish round trip
_ROUND_TRIP_TIMEOUT = 5.0
#: seconds a publish connection may idle before the next publish is preceded by a PING
PUBLISH_IDLE_CHECK = 5


def pack_evalsha(sha: bytes, keys: list[str], args: list[Any]) -> bytes:
    """One EVALSHA as RESP (an array of bulk strings), the bytes redis-py's ``pack_command``
    writes. Hand-written because that method re-joins its buffer once per argument and
    encodes each through its Encoder: ~40% of the publish path in the 100-channel profile
    for a command of 15 arguments. Arguments are str, bytes or int (what publish_soon
    passes); anything else is a TypeError, as redis-py's DataError would be."""
    parts = [b"EVALSHA", sha, b"%d" % len(keys)]
    parts += [key.encode() for key in keys]
    for arg in args:
        if isinstance(arg, bytes):
            parts.append(arg)
        elif isinstance(arg, str):
            parts.append(arg.encode())
        elif isinstance(arg, int) and not isinstance(arg, bool):
            parts.append(b"%d" % arg)
        else:
            raise TypeError(f"cannot send {type(arg).__name__} to redis")
    out = [b"*%d\r\n" % len(parts)]
    for part in parts:
        out += (b"$%d\r\n" % len(part), part, b"\r\n")
    return b"".join(out)


class _Unanswered(RedisError):
    """A publish round trip that failed after its commands were written: Redis may have run
    them, so they are not sent again (each would be stored twice, at two offsets); the
    publishes fail, and their publishers are told."""


def tls_options(options: BrokerOptions, tls: bool) -> dict[str, Any]:
    """redis-py client options for ``--broker-ca`` on a TLS URL (verify against that CA); the
    one place for it, used by the single-node, Cluster and Sentinel clients."""
    return {"ssl_ca_certs": options.tls_ca} if tls and options.tls_ca else {}


async def _round_trip(conn: Any, packed: bytes, count: int) -> list[Any]:
    """Write the packed commands, read ``count`` replies in order; an error reply is that
    command's result (the connection stays in step). Only what fails before the write is
    worth a retry (the caller's policy); from the write on, a failure is ``_Unanswered``."""
    if not conn.is_connected:
        # ``connect`` itself: a Sentinel-managed connection asks the Sentinels for the master
        # there (the implicit connect of ``send_packed_command`` would dial the old address)
        await conn.connect()
    # a PING first when the connection has been idle past the publish client's health-check
    # interval: a connection the server dropped is found before a publish is written on it
    await conn.check_health()
    results: list[Any] = []
    try:
        await conn.send_packed_command(packed, check_health=False)
        async with asyncio.timeout(_ROUND_TRIP_TIMEOUT):
            for _ in range(count):
                try:
                    results.append(await conn.read_response())
                except ResponseError as exc:
                    results.append(exc)
    except TimeoutError:
        await conn.disconnect(nowait=True)
        raise _Unanswered(f"no answer to a publish in {_ROUND_TRIP_TIMEOUT:g} s") from None
    except (RedisError, OSError) as exc:
        await conn.disconnect(nowait=True)
        raise _Unanswered(f"connection lost during a publish: {exc}") from exc
    return results


class _Liveness:
    """One subscriber connection's liveness: the last PONG, records since the watchdog last
    looked, and what the first PONG must do (re-sync, or say this connection is ready)."""

    __slots__ = ("last_pong", "ready", "resync", "traffic")

    def __init__(self, now: float, resync: bool, ready: Callable[[], None] | None) -> None:
        self.last_pong = now
        self.traffic = False
        self.resync = resync
        self.ready = ready


class RedisBroker(Broker):
    """One Redis. Subclasses (Redis Cluster, Sentinel) change how clients are built and whether
    live records travel on sharded pub/sub and epochs are fenced by the master's identity."""

    kind = "redis"
    #: live records on SPUBLISH/SSUBSCRIBE (Redis 7 sharded pub/sub) instead of PUBLISH/SUBSCRIBE
    sharded = False
    #: a subscribe's presence, announce and history read in one transaction (join_and_read)
    pipelined_joins = True
    #: start a new epoch when the master's replication ID changed (a failover; see _ENSURE_EPOCH)
    fenced = False
    #: a channel's keys may move to another master (Redis Cluster resharding): adopt them
    migrates = False

    def __init__(self, url: str, options: BrokerOptions) -> None:
        super().__init__(options)
        self.url = url
        self.channels: set[str] = set()
        self._pending: dict[str, asyncio.Future[None]] = {}
        #: publishes waiting for the next pipeline (keys, args, outcome)
        self._queued: list[tuple[list[str], list[Any], asyncio.Future[Any]]] = []
        self._sender: asyncio.Task[None] | None = None
        #: subscribes waiting for the next join transaction (see ``join_and_read``)
        self._joins: list[
            tuple[str, Members, Envelope, int | None, int, asyncio.Future[list[Any]]]
        ] = []
        self._joiner: asyncio.Task[None] | None = None
        #: the client and the one connection publishes travel on (see ``_pipeline``)
        self._publisher: Any = None
        self._publishing: Any = None
        #: a publish round trip failing on the connection (Redis restarted, a stale
        #: connection) is tried again on a new one, as redis-py's own pipelines are
        self._publish_retry = Retry(ExponentialBackoff(cap=0.5, base=0.05), 2)
        self._pubsub: Any = None
        self._listener: asyncio.Task[None] | None = None
        self._connected = asyncio.Event()
        self._closing = False
        self._events: RedisEventQueue | None = None
        self.reconnects = 0
        self.redis = self._commands()
        self._publish = self.redis.register_script(PUBLISH)
        self._history = self.redis.register_script(HISTORY)
        self._presence = self.redis.register_script(PRESENCE)

    def _fence(self) -> str:
        """The scripts' fence argument (see _ENSURE_EPOCH)."""
        return "2" if self.migrates else "1" if self.fenced else "0"

    def _tls(self) -> dict[str, Any]:
        return tls_options(self.options, self.url.startswith("rediss"))

    def _commands(self) -> Any:
        """The client for scripts and commands (history, offsets, presence)."""
        # A bounded pool that queues: a burst of subscribes (presence, history: a command
        # each) waits its turn for a connection instead of failing with "Too many
        # connections", as redis-py's default pool does past its cap. Redis runs commands one
        # at a time, so a few dozen connections per replica are as fast as hundreds.
        pool = aioredis.BlockingConnectionPool.from_url(
            self.url,
            max_connections=self.options.pool_size,
            timeout=self.options.pool_wait,
            socket_connect_timeout=2,
            socket_timeout=5,
            retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), 2),
            health_check_interval=10,
            **self._tls(),
        )
        return aioredis.Redis.from_pool(pool)

    def _transaction(self) -> Any:
        """A MULTI/EXEC pipeline for the few writes that go together (presence)."""
        return self.redis.pipeline(transaction=True)

    def _live_client(self) -> Any:
        """A fresh client for the live subscriber: no silent retries (a failure must be seen)."""
        return aioredis.from_url(
            self.url, socket_connect_timeout=2, retry=Retry(NoBackoff(), 0), **self._tls()
        )

    def _publish_client(self) -> Any:
        """The client whose one connection carries publishes: no socket timeout of its own
        (``_round_trip`` bounds a whole round trip); a PING before a publish only after the
        connection was idle for ``PUBLISH_IDLE_CHECK`` seconds (see ``_round_trip``)."""
        return aioredis.Redis.from_url(
            self.url,
            socket_connect_timeout=2,
            socket_timeout=None,
            health_check_interval=PUBLISH_IDLE_CHECK,
            **self._tls(),
        )

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(url={self.url!r}, channels={len(self.channels)}, "
            f"connected={self._connected.is_set()}, reconnects={self.reconnects})"
        )

    # --- keys ----------------------------------------------------------------------------

    def _key(self, channel: str, part: str) -> str:
        return f"{self.options.prefix}:{{{channel}}}:{part}"

    def _live(self, channel: str) -> str:
        return self._key(channel, "live")

    # --- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        async with self._errors("connect"):
            await self.redis.ping()
        self._listener = asyncio.create_task(self._listen(), name="limpet-redis-listener")
        try:
            await asyncio.wait_for(self._connected.wait(), 10)
        except TimeoutError:
            raise BrokerError(f"redis at {self.url}: live subscriber did not connect") from None

    async def close(self) -> None:
        self._closing = True
        if self._sender is not None:
            self._sender.cancel()
        if self._joiner is not None:
            self._joiner.cancel()
        self._fail_joins(self._joins, BrokerError("redis broker closed"))
        self._joins = []
        if self._publisher is not None:
            with contextlib.suppress(Exception):
                await self._publisher.aclose()
            if self._publishing is not None:
                with contextlib.suppress(Exception):
                    await self._publishing.disconnect(nowait=True)
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._listener
        with contextlib.suppress(Exception):
            await self.redis.aclose()

    @contextlib.asynccontextmanager
    async def _errors(self, what: str) -> AsyncIterator[None]:
        """The one place redis-py exceptions become BrokerError."""
        try:
            yield
        except (RedisError, RedisClusterException, OSError) as exc:
            # RedisClusterException (a slot not covered during a failover) is no RedisError
            raise BrokerError(strict_hint(f"redis {what} failed: {exc}")) from exc

    # --- history and offsets -------------------------------------------------------------

    async def publish(
        self, channel: str, data: Any, *, idempotency_key: str | None = None
    ) -> tuple[Position, bool]:
        return await self.publish_soon(channel, data, idempotency_key=idempotency_key)

    def publish_soon(
        self, channel: str, data: Any, *, idempotency_key: str | None = None
    ) -> asyncio.Future[tuple[Position, bool]]:
        """Queue the publish for the next pipeline; its future is resolved by the sender."""
        policy = self.options.history.for_channel(channel)
        meta, stream = self._key(channel, "meta"), self._key(channel, "stream")
        idem = self._key(channel, f"idem:{idempotency_key}") if idempotency_key else meta
        args: list[bytes | str | int] = [
            new_epoch(),
            encode_data(data),
            now_ms(),
            policy.size,
            int(policy.ttl * 1000),
            int(self.options.idempotency_ttl * 1000),
            "1" if idempotency_key else "0",
            encode_data(channel),
            "SPUBLISH" if self.sharded else "PUBLISH",
            self._fence(),
            self._state_ttl_ms(policy.ttl),
        ]
        done: asyncio.Future[tuple[Position, bool]] = asyncio.get_running_loop().create_future()
        self._queued.append(([meta, stream, idem, self._live(channel)], args, done))
        if self._sender is None or self._sender.done():
            self._sender = asyncio.create_task(self._send_publishes())
        return done

    async def _send_publishes(self) -> None:
        """Send the queued publishes: all of them in one pipeline, one round trip, in call
        order; one round trip at a time, so Redis runs them in the order they were made."""
        while self._queued:
            batch, self._queued = self._queued, []
            results = await self._pipeline(batch)
            if any(isinstance(r, NoScriptError) for r in results):
                # Redis lost its script cache (a restart): load it once, run those again
                again = [
                    b for b, r in zip(batch, results, strict=True) if isinstance(r, NoScriptError)
                ]
                try:
                    await self.redis.script_load(PUBLISH)
                    redone = iter(await self._pipeline(again))
                except Exception as exc:
                    redone = iter([exc] * len(again))
                results = [next(redone) if isinstance(r, NoScriptError) else r for r in results]
            for (_, _, done), result in zip(batch, results, strict=True):
                if done.done():
                    continue  # its publisher gave up waiting
                if isinstance(result, (RedisError, OSError)):
                    failure = BrokerError(f"redis publish failed: {result}")
                    failure.__cause__ = result
                    done.set_exception(failure)
                elif isinstance(result, BaseException):
                    done.set_exception(result)
                else:
                    epoch, offset, duplicate = result
                    done.set_result((Position(epoch.decode(), int(offset)), bool(duplicate)))

    async def _pipeline(
        self, batch: list[tuple[list[str], list[Any], asyncio.Future[Any]]]
    ) -> list[Any]:
        """One round trip carrying the batch's EVALSHAs, on the publish connection.

        Not redis-py's ``Pipeline``: with a socket timeout, its every send runs in a task of
        its own (``wait_for``) and every reply read under an ``asyncio.timeout``, besides a
        pool checkout, a command stack and a retry wrapper per batch. At the 100-channel
        benchmark's rate a batch is about one publish, and that machinery was ~9% of a
        replica (docs/benchmarks-hub.md). Here: one packing (``pack_evalsha``), one write,
        one read per reply, one timeout per round trip; redis-py's connection, parser and
        retry policy.
        EVALSHA directly: registering the Script would add a SCRIPT EXISTS round trip."""
        try:
            sha = self._publish.sha.encode()
            packed = b"".join(pack_evalsha(sha, keys, args) for keys, args, _ in batch)
            if self._publishing is None:
                if self._publisher is None:
                    self._publisher = self._publish_client()
                self._publishing = await self._publisher.connection_pool.get_connection()
            conn = self._publishing
            return await self._publish_retry.call_with_retry(
                lambda: _round_trip(conn, packed, len(batch)),
                lambda _error: conn.disconnect(nowait=True),
            )
        except Exception as exc:  # every publish of it fails, none is left waiting forever
            return [exc] * len(batch)

    async def history(self, channel: str, since: int | None, limit: int) -> HistoryPage:
        keys, args = self._history_call(channel, since, limit)
        async with self._errors("history"):
            raw = await self._history(keys=keys, args=args)
        return self._history_page(channel, raw)

    def _history_call(
        self, channel: str, since: int | None, limit: int
    ) -> tuple[list[str], list[str | int]]:
        """The HISTORY script's keys and arguments."""
        keys = [self._key(channel, "meta"), self._key(channel, "stream")]
        args: list[str | int] = [
            new_epoch(),
            -1 if since is None else since,
            limit,
            self._fence(),
            self._state_ttl_ms(self.options.history.for_channel(channel).ttl),
        ]
        return keys, args

    def _history_page(self, channel: str, raw: Any) -> HistoryPage:
        """The HISTORY script's answer as a page."""
        epoch_raw, offset, entries = raw
        epoch = epoch_raw.decode()
        messages: list[Message] = []
        for entry_id, fields in entries:
            values = dict(zip(fields[::2], fields[1::2], strict=True))
            # UNREADABLE (past the hub's limits, or not JSON) keeps its offset (announced)
            data = decode_data(
                values[b"d"], max_depth=self.options.max_depth, max_bytes=self.options.max_payload
            )
            messages.append(
                Message(channel, epoch, int(entry_id.split(b"-", 1)[0]), data, int(values[b"t"]))
            )
        policy = self.options.history.for_channel(channel)
        kept = trim_expired(messages, now_ms=now_ms(), ttl=policy.ttl)
        return HistoryPage(epoch, int(offset), tuple(kept))

    async def join_and_read(
        self, channel: str, members: Members, record: Envelope, since: int | None, limit: int
    ) -> JoinRead:
        """Presence, the join announce and the history read in one transaction, shared with
        the other subscribes that arrive meanwhile (``_send_joins``): a storm's subscribes
        take one pool checkout and one round trip per batch instead of three each. Redis runs
        each subscriber's three in this order, as the three calls did. The script goes by
        EVALSHA (a pipeline's own script loading costs a round trip of its own); a Redis that
        lost it (restarted) gets the separate read."""
        if not self.pipelined_joins:
            return await super().join_and_read(channel, members, record, since, limit)
        done: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        self._joins.append((channel, members, record, since, limit, done))
        if self._joiner is None or self._joiner.done():
            self._joiner = asyncio.create_task(self._send_joins())
        *presence, announced, raw = await done
        joined = not any(isinstance(r, Exception) for r in presence)
        failed = next((r for r in (*presence, announced) if isinstance(r, Exception)), None)
        failure = None if failed is None else BrokerError(f"redis presence failed: {failed}")
        if isinstance(raw, NoScriptError):  # a restarted Redis: the read loads the script
            return JoinRead(await self.history(channel, since, limit), joined, failure)
        if isinstance(raw, Exception):
            raise BrokerError(strict_hint(f"redis history failed: {raw}"))
        return JoinRead(self._history_page(channel, raw), joined, failure)

    async def _send_joins(self) -> None:
        """Send the queued subscribes, at most ``JOIN_BATCH`` per transaction, until none is
        left; each waiter gets its six answers, or the batch's error. A batch cut short
        (cancelled: the broker closing) fails its waiters rather than leave them waiting."""
        while self._joins:
            batch, self._joins = self._joins[:JOIN_BATCH], self._joins[JOIN_BATCH:]
            outcome: list[Any] | BaseException
            try:
                async with self._errors("history"):
                    # MULTI/EXEC, as presence_touch's writes were: no reader sees half of them
                    pipe = self.redis.pipeline(transaction=True)
                    for channel, members, record, since, limit, _ in batch:
                        self._join_commands(pipe, channel, members, record, since, limit)
                    outcome = await pipe.execute(raise_on_error=False)
            except BaseException as exc:
                outcome = exc if isinstance(exc, BrokerError) else BrokerError(f"closed: {exc!r}")
                if not isinstance(exc, Exception):
                    self._fail_joins(batch, outcome)
                    raise
            if isinstance(outcome, BaseException):
                self._fail_joins(batch, outcome)
                continue
            for i, (*_, done) in enumerate(batch):
                if not done.done():
                    done.set_result(outcome[i * _JOIN_ANSWERS : (i + 1) * _JOIN_ANSWERS])

    @staticmethod
    def _fail_joins(batch: list[Any], error: BaseException) -> None:
        for *_, done in batch:  # an error of its own each: raised in as many tasks
            if not done.done():
                done.set_exception(BrokerError(str(error)))

    def _join_commands(
        self,
        pipe: Any,
        channel: str,
        members: Members,
        record: Envelope,
        since: int | None,
        limit: int,
    ) -> None:
        """One subscriber's ``_JOIN_ANSWERS`` commands: presence, the announce, the read."""
        self._presence_commands(pipe, channel, members)
        if self.sharded:
            pipe.spublish(self._live(channel), encode_envelope(record))
        else:
            pipe.publish(self._live(channel), encode_envelope(record))
        keys, args = self._history_call(channel, since, limit)
        pipe.evalsha(self._history.sha, len(keys), *keys, *args)

    # --- routing -------------------------------------------------------------------------

    async def subscribe(self, channel: str) -> None:
        self.channels.add(channel)
        pubsub = self._pubsub
        if pubsub is None:
            return  # the listener subscribes every channel when it (re)connects
        waiter = self._pending.get(channel)
        if waiter is None or waiter.done():
            waiter = self._pending[channel] = asyncio.get_running_loop().create_future()
        try:
            await pubsub.subscribe(self._live(channel))
            # Wait for Redis to confirm: only then is history read after it safe to splice.
            await asyncio.wait_for(asyncio.shield(waiter), 5)
        except (RedisError, OSError, TimeoutError) as exc:
            # Not confirmed: the subscribe fails (an error ack) rather than leave a client
            # acknowledged on a channel this replica may never receive.
            self.channels.discard(channel)
            raise BrokerError(f"redis subscribe failed: {exc or 'no confirmation'}") from exc

    async def unsubscribe(self, channel: str) -> None:
        self.channels.discard(channel)
        self._pending.pop(channel, None)
        if self._pubsub is not None:
            with contextlib.suppress(RedisError, OSError):
                await self._pubsub.unsubscribe(self._live(channel))

    async def announce(self, channel: str, record: Envelope) -> None:
        async with self._errors("announce"):
            if self.sharded:
                await self.redis.spublish(self._live(channel), encode_envelope(record))
            else:
                await self.redis.publish(self._live(channel), encode_envelope(record))

    async def _listen(self) -> None:
        """Own the live subscriber: connect, subscribe all, read; on any failure start over."""
        backoff = 0.05
        first = True
        while not self._closing:
            client = self._live_client()
            pubsub = client.pubsub()
            try:
                await pubsub.subscribe(
                    f"{self.options.prefix}:{_CONTROL}", *[self._live(c) for c in self.channels]
                )
                self._pubsub = pubsub
                self._connected.set()
                if not first:
                    self.reconnects += 1
                    log.warning("redis subscriber reconnected; re-syncing subscriptions")
                resync = not first
                first = False
                backoff = 0.05
                await self._read(pubsub, resync=resync)
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError, TimeoutError) as exc:
                log.warning("redis subscriber lost (%s); reconnecting", exc)
            except Exception:
                log.exception("redis subscriber failed; reconnecting")
            finally:
                self._pubsub = None
                self._connected.clear()
                with contextlib.suppress(BaseException):
                    await pubsub.aclose()
                with contextlib.suppress(BaseException):
                    await client.aclose()
            if not self._closing:
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 1.0)

    async def _read(
        self, pubsub: Any, *, resync: bool = False, ready: Callable[[], None] | None = None
    ) -> None:
        """Read live records; PING every health interval and fail when PONGs stop coming.

        With ``resync``, the hub is asked to re-read history once the first PONG arrives: Redis
        answers in order, so by then every SUBSCRIBE of the reconnect is in effect. ``ready``
        is called at that first PONG instead (when several connections must all be ready).

        The records are read by their own task with no timeout per read (see ``_records``);
        this loop is the watchdog: one PING and one wait per interval, not per record."""
        interval = self.options.health_interval
        live = _Liveness(time.monotonic(), resync, ready)
        reader = asyncio.ensure_future(self._records(pubsub, live))
        try:
            while True:
                await pubsub.ping()
                done, _ = await asyncio.wait({reader}, timeout=interval)
                if done:
                    reader.result()  # raises what ended it
                    raise ConnectionError("redis subscriber stopped reading")
                silent = time.monotonic() - live.last_pong
                if live.traffic:
                    live.traffic = False  # records prove the connection is alive too
                    live.last_pong = time.monotonic()
                elif silent > 2 * interval + 1:
                    raise TimeoutError(f"no PONG from redis for {silent:.1f}s")
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reader

    async def _records(self, pubsub: Any, live: _Liveness) -> None:
        """Read what the subscriber connection brings, straight from redis-py's connection.

        ``PubSub.get_message`` costs, per record, a retry wrapper, an operation-duration
        metric, a health check, an ``asyncio.timeout`` and a dict: about half of the live
        reader's time in the 100-channel profile (docs/benchmarks-hub.md). Here a record is one
        ``read_response`` without a timeout (records already buffered are parsed without a
        wake-up each); everything that is not a record (subscribe confirmations, PONGs) still
        goes through ``PubSub.handle_message``, which keeps redis-py's own bookkeeping."""
        conn = pubsub.connection
        parser: Any = getattr(conn, "_parser", None)
        if hasattr(parser, "set_pubsub_push_handler"):
            # redis-py's RESP3 handler formats every record into a debug log line, even when
            # that level is off: the record as it is, instead
            parser.set_pubsub_push_handler(_as_is)
        read = conn.read_response
        prefix_len = len(self.options.prefix) + 2
        while True:
            response = await read(timeout=math.inf, disconnect_on_error=False, push_request=True)
            if type(response) is list and len(response) == 3 and response[0] in _RECORDS:
                live.traffic = True
                self._deliver(response[2])
                continue
            message = await pubsub.handle_message(response)
            if message is None:
                continue
            kind = _KINDS.get(message["type"], message["type"])
            if kind == "pong":
                live.last_pong = time.monotonic()
                if live.ready is not None:
                    on_ready, live.ready = live.ready, None
                    on_ready()
                if live.resync:
                    live.resync = False
                    self.on_resync()
            elif kind == "sunsubscribe":
                # Redis 7 unsubscribes shard channels itself when their slot leaves the node
                # (a migration, or the node turned replica): start over on the new owners.
                name = message["channel"].decode()
                if name.endswith("}:live") and name[prefix_len : -len("}:live")] in self.channels:
                    raise ConnectionError(f"redis moved {name} to another node")
            elif kind == "subscribe":
                name = message["channel"].decode()
                channel = name[prefix_len : -len("}:live")] if name.endswith("}:live") else None
                waiter = self._pending.pop(channel, None) if channel else None
                if waiter is not None and not waiter.done():
                    waiter.set_result(None)
            elif kind == "message":
                live.traffic = True
                self._deliver(message["data"])

    def _deliver(self, data: bytes) -> None:
        try:
            record = decode_envelope(
                data, max_depth=self.options.max_depth, max_bytes=self.options.max_payload
            )
        except (msgspec.DecodeError, RecursionError) as exc:
            # a message whose data does not decode keeps its position (announced)
            head = decode_message_head(data)
            if head is None:
                log.warning("dropping an undecodable record: %s", exc)
                return
            record = head
        if record.channel in self.channels:
            try:
                self.on_envelope(record)
            except Exception:  # one record must never end the live stream
                log.exception("delivering a record of %s failed", record.channel)

    def _state_ttl_ms(self, history_ttl: float) -> int:
        return int(self.options.state_ttl_for(history_ttl) * 1000)

    async def keep(self, channels: list[str]) -> None:
        """Renew the state TTL of channels this replica has subscribers in."""
        if not channels:
            return
        async with self._errors("keep"):
            pipe = self.redis.pipeline(transaction=False)
            for channel in channels:
                ttl = self._state_ttl_ms(self.options.history.for_channel(channel).ttl)
                pipe.pexpire(self._key(channel, "meta"), ttl)
            await pipe.execute()

    # --- presence ------------------------------------------------------------------------

    async def presence_touch(self, channel: str, members: dict[str, dict[str, Any]]) -> None:
        async with self._errors("presence"):
            pipe = self._transaction()
            self._presence_commands(pipe, channel, members)
            await pipe.execute()

    def _presence_commands(
        self, pipe: Any, channel: str, members: dict[str, dict[str, Any]]
    ) -> None:
        """``presence_touch``'s writes, queued on ``pipe``."""
        ttl_ms = int(self.options.presence_ttl * 1000)
        expires = now_ms() + ttl_ms
        zkey, hkey = self._key(channel, "presence"), self._key(channel, "presence:info")
        pipe.zadd(zkey, dict.fromkeys(members, expires))
        pipe.hset(hkey, mapping={m: encode_data(info) for m, info in members.items()})
        pipe.pexpire(zkey, ttl_ms * 2)
        pipe.pexpire(hkey, ttl_ms * 2)

    async def presence_join(self, channel: str, member: str, info: dict[str, Any]) -> bool:
        """Add ``member`` and tell whether it is now the only one, in one transaction (two
        replicas adding the first two members at once see 2 and 1, never 1 and 1)."""
        ttl_ms = int(self.options.presence_ttl * 1000)
        now = now_ms()
        zkey, hkey = self._key(channel, "presence"), self._key(channel, "presence:info")
        async with self._errors("presence"):
            pipe = self._transaction()
            pipe.zremrangebyscore(zkey, "-inf", now)
            pipe.zadd(zkey, {member: now + ttl_ms})
            pipe.zcard(zkey)
            pipe.hset(hkey, member, encode_data(info))
            pipe.pexpire(zkey, ttl_ms * 2)
            pipe.pexpire(hkey, ttl_ms * 2)
            _, added, members, *_ = await pipe.execute()
        return occupancy(True, int(members), bool(added)) == "occupied"

    async def presence_leave(self, channel: str, member: str) -> bool:
        zkey, hkey = self._key(channel, "presence"), self._key(channel, "presence:info")
        async with self._errors("presence"):
            pipe = self._transaction()
            pipe.zremrangebyscore(zkey, "-inf", now_ms())
            pipe.zrem(zkey, member)
            pipe.zcard(zkey)
            pipe.hdel(hkey, member)
            _, removed, members, _ = await pipe.execute()
        return occupancy(False, int(members), bool(removed)) == "vacated"

    def event_queue(self) -> EventQueue:
        if self._events is None:
            self._events = RedisEventQueue(self.redis, self.options.prefix, self._errors)
        return self._events

    async def presence_remove(self, channel: str, member: str) -> None:
        async with self._errors("presence"):
            pipe = self._transaction()
            pipe.zrem(self._key(channel, "presence"), member)
            pipe.hdel(self._key(channel, "presence:info"), member)
            await pipe.execute()

    async def presence(self, channel: str) -> list[dict[str, Any]]:
        keys = [self._key(channel, "presence"), self._key(channel, "presence:info")]
        async with self._errors("presence"):
            flat = await self._presence(keys=keys, args=[now_ms()])
        out: list[dict[str, Any]] = []
        for member, info in zip(flat[::2], flat[1::2], strict=True):
            decoded = msgspec.json.decode(info)
            out.append({"id": member.decode(), **(decoded if isinstance(decoded, dict) else {})})
        return out
