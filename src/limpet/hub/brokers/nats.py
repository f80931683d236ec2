"""The NATS broker: JetStream for history and offsets, republished subjects for routed live fan-out.

Layout (``limpet`` is the prefix):

    stream LIMPET_HUB   subjects ``limpet.ch.<channel>``; one stream for every channel.
                        max_msgs_per_subject = the largest history size (per-prefix sizes and
                        TTLs are applied when reading); duplicate_window = idempotency window;
                        RePublish ``limpet.ch.>`` -> ``limpet.live.>`` so replicas get *stored*
                        messages only, in stream order, on plain core subscriptions.
    headers             Limpet-Offset (the channel offset), Limpet-Epoch, Limpet-Ts, Limpet-Prev
                        (stream sequence of the channel's previous message).
    kv  limpet_presence key ``<hex(channel)>.<member>``, bucket TTL = presence ttl.

Offsets: the stream sequence is shared by all channels, so it cannot be a channel's offset; the
offset is a header, assigned with optimistic concurrency: publish with
``Nats-Expected-Last-Subject-Sequence`` = the sequence of the channel's last message and
``Limpet-Offset`` = its offset + 1; JetStream rejects the write if another replica got there
first, and we re-read and retry. Idempotency keys map to ``Nats-Msg-Id`` (deduplicated by
JetStream within duplicate_window).

Clusters: ``nats://H:P,H:P,...`` seeds nats-py's server pool (it also learns the cluster's other
servers from INFO and fails over between them). The stream and the presence bucket are created
with ``replicas`` copies (``--nats-replicas``; by default 3 when the cluster has 3 servers or more,
else 1), so losing one server of three loses no history: JetStream acknowledges a publish only
once a majority of the replicas stored it.

Epoch: derived from the stream's creation time, so it changes exactly when the stream (the
history) was lost and recreated. Live subscriptions are core NATS subscriptions on
``limpet.live.<channel>``; nats-py re-subscribes after a reconnect and its PINGs detect a dead
connection; on every reconnect the hub re-syncs its subscriptions from history.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import logging
import ssl
from typing import Any

import msgspec
import nats
from nats.errors import Error as NatsError
from nats.errors import SlowConsumerError
from nats.js import api
from nats.js.errors import APIError, BadRequestError, NotFoundError, ServiceUnavailableError

from limpet.errors import BrokerError
from limpet.hub.brokers.base import Broker, BrokerOptions, EventQueue, now_ms
from limpet.hub.brokers.nats_events import NatsEventQueue
from limpet.hub.brokers.urls import BrokerUrl, parse_broker_url
from limpet.hub.channels import (
    Envelope,
    HistoryPage,
    Message,
    Position,
    decode_envelope,
    encode_envelope,
)
from limpet.hub.channels.history import trim_expired
from limpet.hub.channels.records import decode_data, encode_data
from limpet.tlsverify import strict_hint

log = logging.getLogger("limpet.hub.nats")


def _reason(exc: BaseException) -> str:
    """A connection failure in words ("connection refused"), not an errno tuple."""
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused (is nats-server running there?)"
    return strict_hint(str(exc)) or type(exc).__name__


#: JetStream error code for a failed Nats-Expected-Last-Subject-Sequence check
WRONG_LAST_SEQUENCE = 10071
#: JetStream error code "no suitable peers for placement": a cluster whose servers have not yet
#: all joined cannot place a replicated stream
NO_PEERS_FOR_PLACEMENT = 10005
#: seconds the hub keeps retrying JetStream setup at start (see NatsBroker._first_ensure)
SETUP_WINDOW = 30.0


def _transient(exc: BaseException | None) -> bool:
    """A JetStream setup failure that a forming or electing cluster clears by itself."""
    if isinstance(exc, TimeoutError):
        return True
    if isinstance(exc, ServiceUnavailableError):
        # JetStream's own 503 ("temporarily unavailable", "insufficient resources"); nats-py also
        # raises it, with no code, when nothing answers the JetStream API (JetStream is off)
        return exc.code is not None
    return isinstance(exc, APIError) and exc.err_code == NO_PEERS_FOR_PLACEMENT


class NatsBroker(Broker):
    kind = "nats"
    #: live messages nats-py holds for one channel before it drops them as a slow consumer
    #: (then the hub re-syncs from history); a bound, not a queue to grow without end
    pending_limit = 65536

    def __init__(
        self, url: str | BrokerUrl, options: BrokerOptions, *, replicas: int | None = None
    ) -> None:
        super().__init__(options)
        self.spec = url if isinstance(url, BrokerUrl) else parse_broker_url(url)
        self.url = self.spec.url
        #: copies of the stream and presence bucket (None: 3 on a cluster of 3 or more, else 1)
        self.replicas = replicas
        p = options.prefix
        self.stream = f"{p.upper()}_HUB"
        self.epoch = ""
        self.nc: Any = None
        self._refused = asyncio.Event()
        self._start_errors: list[Exception] = []
        #: direct gets may be answered by any replica, and a follower can lag behind the
        #: leader: a stale "last message" would move a channel's position back (a duplicate
        #: for a client recovering from it). With replicas, reads go to the stream leader.
        self._direct = True
        self.js: Any = None
        self._events: NatsEventQueue | None = None
        self.kv: Any = None
        self.subs: dict[str, Any] = {}
        self.reconnects = 0
        self.slow_consumers = 0
        self._last: dict[str, tuple[int, int]] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    def __repr__(self) -> str:
        return f"NatsBroker(url={self.url!r}, epoch={self.epoch!r}, channels={len(self.subs)})"

    def _subject(self, channel: str) -> str:
        return f"{self.options.prefix}.ch.{channel}"

    def _live(self, channel: str) -> str:
        return f"{self.options.prefix}.live.{channel}"

    # --- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        interval = max(1, round(self.options.health_interval))
        self._start_errors.clear()
        connect = asyncio.ensure_future(self._connect(interval))
        refused = asyncio.ensure_future(self._refused.wait())
        try:
            # bounded: with unlimited reconnects nats-py would retry the first connect forever;
            # and once every server has refused, say so now rather than at the time limit
            done, _ = await asyncio.wait(
                {connect, refused}, timeout=10, return_when="FIRST_COMPLETED"
            )
            if connect in done:
                self.nc = connect.result()
            else:
                reason = _reason(self._start_errors[-1]) if self._start_errors else "timed out"
                raise BrokerError(f"cannot reach nats at {self._where()}: {reason}")
        except (NatsError, OSError, TimeoutError) as exc:
            raise BrokerError(f"cannot reach nats at {self._where()}: {_reason(exc)}") from exc
        finally:
            refused.cancel()
            if not connect.done():
                connect.cancel()
                with contextlib.suppress(BaseException):
                    await connect
        self.js = self.nc.jetstream()
        try:
            await self._first_ensure()
        except BaseException:
            # close the client's reader, pinger and flusher tasks before the loop ends, or
            # asyncio prints "Task was destroyed" tracebacks after the one-line error
            with contextlib.suppress(Exception):
                await self.nc.close()
            self.js = None
            raise

    async def _first_ensure(self) -> None:
        """The stream and bucket at start, retried while a cluster elects their leaders.

        A NATS cluster that has just formed (or lost a server) answers JetStream requests with a
        timeout until its meta leader and the stream's replicas agree; two replicas starting
        together also create the same stream at once. Both settle within seconds, so the hub
        retries for up to ``SETUP_WINDOW`` seconds before it gives up with the last error.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + SETUP_WINDOW
        for attempt in itertools.count():
            try:
                await self._ensure()
                return
            except BrokerError as exc:
                if loop.time() >= deadline or not _transient(exc.__cause__):
                    raise
                (log.debug if attempt else log.warning)(
                    "%s (is the cluster still forming?); retrying for up to %d s",
                    exc,
                    SETUP_WINDOW,
                )
                await asyncio.sleep(0.5)

    def _where(self) -> str:
        return ", ".join(self.spec.server_urls("tls" if self.spec.tls else "nats"))

    def cluster_size(self) -> int:
        """Servers known to the client: the URLs given and those the cluster announced."""
        if self.nc is None:
            return len(self.spec.nodes)
        return len({(u.hostname, u.port) for u in self.nc.servers}) or 1

    async def _connect(self, interval: int) -> Any:
        return await nats.connect(
            servers=self.spec.server_urls("tls" if self.spec.tls else "nats"),
            user=self.spec.username if self.spec.password else None,
            password=self.spec.password if self.spec.username else None,
            token=self.spec.password if not self.spec.username else None,
            connect_timeout=2,
            ping_interval=interval,
            max_outstanding_pings=2,
            reconnect_time_wait=0.2,
            max_reconnect_attempts=-1,
            allow_reconnect=True,
            reconnected_cb=self._reconnected,
            error_cb=self._error,
            tls=self._tls_context(),
        )

    def _tls_context(self) -> ssl.SSLContext | None:
        """For ``tls://`` with ``--broker-ca``: verify the servers against that CA (without it
        nats-py uses the system's CAs)."""
        if not (self.spec.tls and self.options.tls_ca):
            return None
        return ssl.create_default_context(cafile=self.options.tls_ca)

    async def close(self) -> None:
        if self.nc is not None:
            with contextlib.suppress(Exception):
                await self.nc.drain()

    async def _error(self, exc: Exception) -> None:
        # before the first connection, start() reports the failure once; no log per attempt
        (log.warning if self.js is not None else log.debug)("nats: %s", exc)
        if isinstance(exc, SlowConsumerError):
            # nats-py dropped live messages past a subscription's pending limit: the same
            # re-sync from history as after a reconnect, or the tail would be missing silently
            self.slow_consumers += 1
            self.on_resync()
        if self.js is None and self.nc is None:
            self._start_errors.append(exc)
            if isinstance(exc, OSError) and len(self._start_errors) >= len(self.spec.nodes):
                self._refused.set()

    async def _reconnected(self) -> None:
        self.reconnects += 1
        log.warning("nats reconnected; re-syncing subscriptions")
        try:
            await self._ensure()
        except BrokerError as exc:
            log.warning("after reconnect: %s", exc)
        self.on_resync()

    async def _ensure(self) -> None:
        """Create the stream and presence bucket if missing; learn the epoch."""
        sizes = [self.options.history.default.size] + [
            p.size for _, p in self.options.history.by_prefix
        ]
        prefix = self.options.prefix
        replicas = self.replicas or (3 if self.cluster_size() >= 3 else 1)
        self._direct = replicas == 1
        config = api.StreamConfig(
            name=self.stream,
            subjects=[f"{prefix}.ch.>"],
            max_msgs_per_subject=max(1, *sizes),
            duplicate_window=self.options.idempotency_ttl,
            allow_direct=self._direct,
            num_replicas=replicas,
            republish=api.RePublish(src=f"{prefix}.ch.>", dest=f"{prefix}.live.>"),
        )
        try:
            try:
                info = await self.js.stream_info(self.stream)
            except NotFoundError:
                info = await self.js.add_stream(config)
            else:
                have = info.config.num_replicas or 1
                if have < replicas:
                    log.warning(
                        "nats stream %s: raising replicas %d -> %d", self.stream, have, replicas
                    )
                    info.config.num_replicas = replicas
                    info = await self.js.update_stream(info.config)
            created = info.created.isoformat() if info.created else self.stream
            self.epoch = hashlib.sha256(created.encode()).hexdigest()[:12]
            bucket = f"{prefix}_presence"
            try:
                self.kv = await self.js.key_value(bucket)
            except (NotFoundError, BadRequestError, NatsError):
                self.kv = await self.js.create_key_value(
                    bucket=bucket, ttl=self.options.presence_ttl, history=1, replicas=replicas
                )
        except ServiceUnavailableError as exc:
            if exc.code is None:
                raise BrokerError(
                    "nats jetstream setup failed: JetStream is not enabled on the server "
                    "(start nats-server with -js, or add `jetstream {}` to its config)"
                ) from exc
            raise BrokerError(f"nats jetstream setup failed: {exc.description}") from exc
        except (NatsError, OSError, TimeoutError) as exc:
            raise BrokerError(f"nats jetstream setup failed: {exc}") from exc
        self._last.clear()

    # --- history and offsets -------------------------------------------------------------

    async def _last_of(self, channel: str, *, fresh: bool = False) -> tuple[int, int]:
        """(stream sequence, offset) of the channel's last message; (0, 0) when it has none."""
        if not fresh and channel in self._last:
            return self._last[channel]
        try:
            raw = await self.js.get_last_msg(
                self.stream, self._subject(channel), direct=self._direct
            )
        except NotFoundError:
            last = (0, 0)
        else:
            last = (int(raw.seq), int(raw.headers["Limpet-Offset"]))
        self._last[channel] = last
        return last

    async def publish(
        self, channel: str, data: Any, *, idempotency_key: str | None = None
    ) -> tuple[Position, bool]:
        payload = encode_data(data)
        lock = self._locks.setdefault(channel, asyncio.Lock())
        try:
            async with lock:  # one local writer per channel: conflicts only across replicas
                for _ in range(100):
                    seq, offset = await self._last_of(channel)
                    headers = {
                        "Limpet-Offset": str(offset + 1),
                        "Limpet-Epoch": self.epoch,
                        "Limpet-Ts": str(now_ms()),
                        "Limpet-Prev": str(seq),
                        "Nats-Expected-Last-Subject-Sequence": str(seq),
                    }
                    if idempotency_key is not None:
                        headers["Nats-Msg-Id"] = f"{channel}:{idempotency_key}"
                    try:
                        ack = await self.js.publish(
                            self._subject(channel), payload, stream=self.stream, headers=headers
                        )
                    except APIError as exc:
                        if exc.err_code == WRONG_LAST_SEQUENCE:
                            self._last.pop(channel, None)  # another replica wrote; re-read
                            continue
                        raise
                    if ack.duplicate:
                        raw = await self.js.get_msg(self.stream, seq=ack.seq, direct=self._direct)
                        return Position(
                            raw.headers["Limpet-Epoch"], int(raw.headers["Limpet-Offset"])
                        ), True
                    self._last[channel] = (ack.seq, offset + 1)
                    return Position(self.epoch, offset + 1), False
        except (NatsError, OSError, TimeoutError) as exc:
            self._last.pop(channel, None)
            raise BrokerError(f"nats publish failed: {exc}") from exc
        raise BrokerError(f"nats publish to {channel!r}: too much contention, try again")

    async def history(self, channel: str, since: int | None, limit: int) -> HistoryPage:
        policy = self.options.history.for_channel(channel)
        try:
            seq, last = await self._last_of(channel, fresh=True)
            for _ in range(100):
                if since is None or last >= since:
                    break
                # Someone saw offset `since` (live messages are republished by the leader as
                # it stores them), and a stream never loses what it acknowledged: a leader
                # elected a moment ago may not have applied all of its log yet. Re-read, for
                # up to 5 s, rather than move the client back to offsets it already has.
                await asyncio.sleep(0.05)
                seq, last = await self._last_of(channel, fresh=True)
            if since is not None and last < since:
                # Still behind after the wait: answering this position would move the client
                # back to offsets it already has (duplicates). Fail instead: a subscribe gets
                # "broker unavailable" and is retried by the client, a gap fill retries and
                # at worst ends the subscription at the client's own position.
                raise BrokerError(
                    f"history of {channel} ends at offset {last}, before the {since} given in "
                    "since (is the stream electing a leader?)"
                )
            if since is None or limit <= 0 or last <= since:
                return HistoryPage(self.epoch, last)
            # Walk back along Limpet-Prev with direct gets: at most min(gap, size) messages.
            wanted = min(last - since, policy.size)
            found: list[Message] = []
            while seq > 0 and len(found) < wanted:
                try:
                    raw = await self.js.get_msg(self.stream, seq=seq, direct=self._direct)
                except NotFoundError:
                    break  # trimmed: the rest of the gap is beyond the window
                try:
                    message = self._message(channel, raw.headers, raw.data)
                except (KeyError, ValueError, RecursionError, msgspec.DecodeError):
                    break  # unreadable: the rest of the gap is reported as not recovered
                if message.offset <= since:
                    break
                found.append(message)
                seq = int(raw.headers.get("Limpet-Prev", 0))
        except (NatsError, OSError, TimeoutError) as exc:
            raise BrokerError(f"nats history failed: {exc}") from exc
        found.reverse()
        kept = trim_expired(found, now_ms=now_ms(), ttl=policy.ttl)
        return HistoryPage(self.epoch, last, tuple(kept[:limit]))

    def _message(self, channel: str, headers: dict[str, str], data: bytes) -> Message:
        return Message(
            channel,
            headers["Limpet-Epoch"],
            int(headers["Limpet-Offset"]),
            # UNREADABLE (past the hub's limits, or not JSON) keeps its offset (announced)
            decode_data(data, max_depth=self.options.max_depth, max_bytes=self.options.max_payload),
            int(headers.get("Limpet-Ts", 0)),
        )

    # --- routing -------------------------------------------------------------------------

    async def subscribe(self, channel: str) -> None:
        if channel in self.subs:
            return
        try:
            self.subs[channel] = await self.nc.subscribe(
                self._live(channel), cb=self._on_live, pending_msgs_limit=self.pending_limit
            )
            await self.nc.flush(timeout=5)  # the server has the SUB before we read history
        except (NatsError, OSError, TimeoutError) as exc:
            raise BrokerError(f"nats subscribe failed: {exc}") from exc

    async def unsubscribe(self, channel: str) -> None:
        sub = self.subs.pop(channel, None)
        if sub is not None:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()

    async def _on_live(self, msg: Any) -> None:
        channel = msg.subject[len(self.options.prefix) + len(".live.") :]
        if channel not in self.subs:
            return
        try:
            headers = msg.headers or {}
            if "Limpet-Offset" in headers:
                message = self._message(channel, headers, msg.data)
                self._last[channel] = (int(headers.get("Nats-Sequence", 0)), message.offset)
                record: Envelope = message
            else:
                record = decode_envelope(msg.data, max_depth=self.options.max_depth)
        except (KeyError, ValueError, RecursionError, msgspec.DecodeError) as exc:
            log.warning("dropping an undecodable record on %s: %s", msg.subject, exc)
            return
        try:
            self.on_envelope(record)
        except Exception:  # one record must never end the live stream
            log.exception("delivering a record of %s failed", channel)

    async def announce(self, channel: str, record: Envelope) -> None:
        try:
            await self.nc.publish(self._live(channel), encode_envelope(record))
        except (NatsError, OSError) as exc:
            raise BrokerError(f"nats announce failed: {exc}") from exc

    # --- presence ------------------------------------------------------------------------

    def event_queue(self) -> EventQueue:
        if self._events is None:
            replicas = self.replicas or (3 if self.cluster_size() >= 3 else 1)
            self._events = NatsEventQueue(_Late(self), self.options.prefix, replicas)
        return self._events

    def _member_key(self, channel: str, member: str) -> str:
        return f"{channel.encode().hex()}.{member}"

    async def presence_touch(self, channel: str, members: dict[str, dict[str, Any]]) -> None:
        try:
            for member, info in members.items():
                await self.kv.put(self._member_key(channel, member), encode_data(info))
        except (NatsError, OSError, TimeoutError) as exc:
            raise BrokerError(f"nats presence failed: {exc}") from exc

    async def presence_remove(self, channel: str, member: str) -> None:
        try:
            await self.kv.purge(self._member_key(channel, member))
        except (NatsError, OSError, TimeoutError) as exc:
            raise BrokerError(f"nats presence failed: {exc}") from exc

    async def presence(self, channel: str) -> list[dict[str, Any]]:
        prefix = channel.encode().hex() + "."
        out: list[dict[str, Any]] = []
        try:
            # a watcher filtered on the server to this channel's keys: one round, with values
            watcher = await self.kv.watch(prefix + ">", ignore_deletes=True)
            try:
                async for entry in watcher:
                    if entry is None:
                        break
                    if entry.value:
                        info = msgspec.json.decode(entry.value)
                        extra = info if isinstance(info, dict) else {}
                        out.append({"id": entry.key[len(prefix) :], **extra})
            finally:
                await watcher.stop()
        except (NatsError, OSError, TimeoutError) as exc:
            raise BrokerError(f"nats presence failed: {exc}") from exc
        return sorted(out, key=lambda member: str(member["id"]))


class _Late:
    """The broker's JetStream context as it is when used (it is made at start, and again on a
    reconnect), for the event queue built before that."""

    def __init__(self, broker: NatsBroker) -> None:
        self._broker = broker

    def __getattr__(self, name: str) -> Any:
        js = self._broker.js
        if js is None:
            raise BrokerError("nats is not connected")
        return getattr(js, name)
