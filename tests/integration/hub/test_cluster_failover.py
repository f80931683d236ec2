"""The hub on clustered brokers: per subscriber, nothing is lost silently, duplicated or
reordered, and no offset names two messages, with a broker node SIGKILLed mid-stream.

Each run: two hub replicas; a publisher on each (socket.io, acks kept); subscribers A (replica 0),
B (replica 1) and C (replica 0, leaves mid-stream and comes back to replica 1 with ``since``), all
first subscribed with ``since``; ``fail`` runs mid-stream. The score of each subscriber is
printed (``-s``) and asserted. Redis runs make the loss real: the replicas are stopped (SIGSTOP)
while the master acknowledges more messages, then the master is SIGKILLed and the replicas
resumed, so the promoted one never had those writes. The fencing test at the end shows the hazard
deterministically, with its twin.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import engineio.async_client
import pytest
import redis

from limpet.hub.brokers.base import BrokerOptions
from limpet.hub.brokers.redis import RedisBroker
from limpet.hub.brokers.redis_cluster import RedisClusterBroker
from limpet.hub.brokers.urls import parse_broker_url
from tests.integration.hub.conftest import Peer, Replicas, eventually, start_hub_procs
from tests.support import clusters
from tests.support.certs import TestCA
from tests.support.ledger import Delivered, Log, Score, reused, score
from tests.support.procs import Procs, free_port, limpet_env, wait_listening

pytestmark = pytest.mark.timeout(90)


class Subscriber(Peer):
    """A Peer that also logs messages and recovered:false notices in arrival order."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.log = Log()
        self.sio.on("recovery", self._on_recovery)

    def _on_message(self, message: dict[str, Any]) -> None:
        super()._on_message(message)
        data = message["data"]
        self.log.message(message["epoch"], message["offset"], f"{data['p']}:{data['n']}")

    def _on_recovery(self, notice: dict[str, Any]) -> None:
        self.recoveries.append(notice)
        self.log.notice(notice["epoch"], notice["offset"])

    async def join(self, url: str, channel: str, since: dict[str, Any]) -> dict[str, Any]:
        """Connect and subscribe with ``since``; while the broker is failing over, a subscribe
        is answered "broker unavailable", and a client tries again (bounded)."""
        await self.connect(url)
        for _ in range(100):
            ack = await self.subscribe(channel, since)
            if "broker unavailable" not in ack.get("error", ""):
                break
            await asyncio.sleep(0.1)
        assert "error" not in ack, ack
        if not ack["recovered"]:
            self.log.notice(ack["epoch"], ack["offset"])
        return ack

    async def settle(self) -> None:
        """Let the handlers of packets already received run: python-engineio dispatches each
        message in a task of its own, which may run after disconnect() returned."""
        pending = [t for t in engineio.async_client.task_reference_holder if not t.done()]
        if pending:
            await asyncio.wait(pending, timeout=5)

    def where(self) -> dict[str, Any] | None:
        """The last position this subscriber was given: a message, or a recovered:false notice
        (after which it continues from the notice's position)."""
        if not self.log.entries:
            return None
        last = self.log.entries[-1]
        return {"epoch": last.epoch, "offset": last.offset}


@dataclass
class Run:
    scores: dict[str, Score]
    reused: int
    epochs: set[str]
    failed: list[int]

    def assert_sound(self) -> None:
        """Never lost silently, never duplicated, never reordered, never an offset reused."""
        for name, s in self.scores.items():
            assert s.lost_silently == 0, (name, s)
            assert s.duplicated == 0, (name, s)
            assert s.out_of_order == 0, (name, s)
        assert self.reused == 0


def _runs(log: Log) -> str:
    """A log in short: epoch:first-last runs and notices."""
    out: list[str] = []
    run: list[Any] = []
    for entry in log.entries:
        if isinstance(entry, Delivered):
            if run and run[0] == entry.epoch and entry.offset == run[2] + 1:
                run[2] = entry.offset
                continue
            if run:
                out.append(f"{run[0][:4]}:{run[1]}-{run[2]}")
            run = [entry.epoch, entry.offset, entry.offset]
        else:
            if run:
                out.append(f"{run[0][:4]}:{run[1]}-{run[2]}")
                run = []
            out.append(f"NOTICE({entry.epoch[:4]}:{entry.offset})")
    if run:
        out.append(f"{run[0][:4]}:{run[1]}-{run[2]}")
    return " ".join(out)


class Publisher:
    """Publishes ``{"p": name, "n": 0, 1, ...}`` one at a time; keeps the acked positions."""

    def __init__(
        self,
        name: str,
        url: str,
        channel: str,
        acked: dict[str, tuple[str, int]],
        order: list[tuple[str, int]],
    ) -> None:
        self.name, self.url, self.channel, self.acked, self.order = name, url, channel, acked, order
        self.peer = Peer(name)
        self.count = 0
        self.failed = 0
        self.stop = False

    async def run(self) -> None:
        await self.peer.connect(self.url)
        n = 0
        while not self.stop:
            try:
                ack = await self.peer.call(
                    "publish", {"channel": self.channel, "data": {"p": self.name, "n": n}}, 5
                )
            except (TimeoutError, Exception):
                ack = {"error": "timeout"}
            if "offset" in ack:
                self.acked[f"{self.name}:{n}"] = (ack["epoch"], ack["offset"])
                self.order.append((ack["epoch"], ack["offset"]))
                self.count += 1
            else:
                self.failed += 1  # not retried: an unacked message may or may not exist
                await asyncio.sleep(0.05)
            n += 1
            await asyncio.sleep(0.005)  # a steady stream, not a flood, on a shared machine


async def failover_run(
    reps: Replicas,
    fail: Callable[[str, Callable[[], int]], None],
    *,
    before: int = 40,
    after: int = 40,
) -> Run:
    """Stream, call ``fail(channel, acked_count)`` in a thread mid-stream, stream on; score."""
    channel = f"failover-{uuid.uuid4().hex[:8]}"
    acked: dict[str, tuple[str, int]] = {}
    order: list[tuple[str, int]] = []  # every ack, in the order they arrived
    warm = await Peer("warm").connect(reps.urls[0])
    first = await warm.call("publish", {"channel": channel, "data": {"p": "warm", "n": 0}})
    acked["warm:0"] = (first["epoch"], first["offset"])
    await warm.close()
    since = {"epoch": first["epoch"], "offset": 0}
    a, b, c = Subscriber("a"), Subscriber("b"), Subscriber("c")
    pubs = [Publisher(f"p{i}", url, channel, acked, order) for i, url in enumerate(reps.urls[:2])]
    tasks: list[asyncio.Task[None]] = []
    try:
        for sub, url in ((a, reps.urls[0]), (b, reps.urls[1]), (c, reps.urls[0])):
            assert (await sub.join(url, channel, since))["recovered"] is True
        tasks = [asyncio.create_task(p.run()) for p in pubs]
        await eventually(lambda: len(acked) >= before, timeout=20, what="acks before the failure")
        await c.close()  # away during the failure: comes back with since
        await c.settle()
        await asyncio.to_thread(fail, channel, lambda: len(acked))
        counts = [p.count for p in pubs]
        # its position when it comes back: what it processed, late packets of its old session too
        c_since = c.where()
        assert c_since is not None
        await c.join(reps.urls[1], channel, c_since)
        await eventually(
            lambda: all(p.count >= n + after for p, n in zip(pubs, counts, strict=True)),
            timeout=30,
            what="acks after the failure",
        )
        for p in pubs:
            p.stop = True
        await asyncio.gather(*tasks)
        epoch = order[-1][0]
        final = max(offset for e, offset in order if e == epoch)
        for sub in (a, b, c):
            await eventually(
                lambda s=sub: (
                    (w := s.where()) is not None and w["epoch"] == epoch and w["offset"] >= final
                ),
                timeout=20,
                what=f"{sub.name} reaches {epoch}:{final}",
            )
        scores = {s.name: score(s.log, acked) for s in (a, b, c)}
        twice = reused([s.log for s in (a, b, c)], acked)
        for name, s in scores.items():
            print(f"{name}: {s}")
            print("   ", _runs(next(x for x in (a, b, c) if x.name == name).log))
        print(f"acked={len(acked)} failed={[p.failed for p in pubs]} reused={twice}")
        return Run(scores, twice, {e for e, _ in acked.values()}, [p.failed for p in pubs])
    finally:
        for p in pubs:
            p.stop = True
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for peer in (a, b, c, *[p.peer for p in pubs]):
            await peer.close()


def slot_key(channel: str) -> str:
    """A key on the channel's slot: every key of a channel shares the hash tag {channel}."""
    return f"{{{channel}}}"


async def test_redis_cluster_two_hubs_on_sharded_pub_sub(procs: Procs) -> None:
    """Two hubs on a Redis Cluster: the same run without a failure loses nothing, c comes back
    with ``since`` and recovers, and the live records travel on the channel's shard only."""
    cluster = clusters.start_redis_cluster(procs)
    reps = start_hub_procs(procs, cluster.url, 2, "--health-interval", "0.5")
    seen: dict[str, Any] = {}

    def no_failure(channel: str, acked: Callable[[], int]) -> None:
        live = f"limpet:{slot_key(channel)}:live"
        owner = cluster.master_of(slot_key(channel))
        for node in cluster.alive():
            with redis.Redis(port=node.port) as r:
                _, sharded = r.execute_command("PUBSUB", "SHARDNUMSUB", live)
                _, plain = r.execute_command("PUBSUB", "NUMSUB", live)
                seen[str(node.port)] = (node is owner, int(sharded), int(plain))

    run = await failover_run(reps, no_failure)
    run.assert_sound()
    assert len(run.epochs) == 1 and run.failed == [0, 0]
    for name, s in run.scores.items():
        assert s.lost_announced == 0 and s.lost_silently == 0, (name, s)
    # both hubs SSUBSCRIBEd on the slot's master, nowhere else, and nobody SUBSCRIBEd
    assert sorted(v for v in seen.values() if v[1]) == [(True, 2, 0)], seen
    assert all(plain == 0 for _, _, plain in seen.values())


def _stall_replicas_then_kill(
    procs: Procs, master: Any, replicas: list[Any], acked: Callable[[], int], more: int = 15
) -> None:
    """Stop the replicas, let the master acknowledge ``more`` writes they never get, kill it,
    resume the replicas: the one promoted really lacks acknowledged writes."""
    for r in replicas:
        os.kill(r.proc.pid, signal.SIGSTOP)
    try:
        target = acked() + more
        deadline = time.monotonic() + 10
        while acked() < target and time.monotonic() < deadline:
            time.sleep(0.01)
        procs.kill(master.proc)
    finally:
        for r in replicas:
            os.kill(r.proc.pid, signal.SIGCONT)


async def test_redis_cluster_master_killed_mid_stream(procs: Procs) -> None:
    """The master of the channel's shard (where both hubs' live links for it are) dies with
    writes its replica never got: subscribers are told, nothing is reused or duplicated."""
    cluster = clusters.start_redis_cluster(procs)
    reps = start_hub_procs(procs, cluster.url, 2, "--health-interval", "0.5")

    def fail(channel: str, acked: Callable[[], int]) -> None:
        master = cluster.master_of(slot_key(channel))
        _stall_replicas_then_kill(procs, master, [cluster.replica_of(master)], acked)
        cluster.wait_promoted(slot_key(channel), master)

    run = await failover_run(reps, fail)
    run.assert_sound()
    assert len(run.epochs) == 2, "the promoted replica starts a new epoch"
    assert run.scores["c"].lost_announced > 0, "c was away while writes were lost: it is told"


async def test_redis_sentinel_master_killed_mid_stream(procs: Procs) -> None:
    """The master (the node every hub is connected to) dies with writes no replica got."""
    group = clusters.start_sentinel_group(procs)
    reps = start_hub_procs(procs, group.url, 2, "--health-interval", "0.5")

    def fail(channel: str, acked: Callable[[], int]) -> None:
        master = group.master()
        others = [n for n in group.redis if n is not master]
        _stall_replicas_then_kill(procs, master, others, acked)
        group.wait_failover(master)

    run = await failover_run(reps, fail)
    run.assert_sound()
    assert len(run.epochs) == 2, "the promoted replica starts a new epoch"
    assert run.scores["c"].lost_announced > 0


async def test_redis_sentinel_first_sentinel_then_master_killed(procs: Procs) -> None:
    """The Sentinel the hubs ask first dies, then the master: the hubs learn the promoted
    replica from the two Sentinels left (a quorum still), and nothing is lost silently."""
    group = clusters.start_sentinel_group(procs)
    reps = start_hub_procs(procs, group.url, 2, "--health-interval", "0.5")

    def fail(channel: str, acked: Callable[[], int]) -> None:
        procs.kill(group.sentinels[0].proc)
        master = group.master()
        procs.kill(master.proc)
        group.wait_failover(master)

    run = await failover_run(reps, fail)
    run.assert_sound()
    assert len(run.epochs) == 2, "the promoted replica starts a new epoch"


async def test_nats_cluster_node_killed_mid_stream_loses_nothing(procs: Procs) -> None:
    """R3 JetStream: the server a hub is connected to dies; nothing is lost or even announced."""
    cluster = clusters.start_nats_cluster(procs)
    # history enough for c's whole absence (publishing goes on while the cluster elects leaders)
    reps = start_hub_procs(
        procs, cluster.url, 2, "--health-interval", "1", "--history-size", "10000"
    )

    def fail(channel: str, acked: Callable[[], int]) -> None:
        busy = clusters.poll(
            lambda: [i for i in range(3) if cluster.clients(i) > 0], what="a server with clients"
        )
        cluster.kill(busy[0])
        # the roaming subscriber comes back once the stream has a leader again (during the
        # election itself a history read may lag what was sent live: docs/hub.md)
        cluster.wait_stream_leader("LIMPET_HUB")

    run = await failover_run(reps, fail)
    run.assert_sound()
    assert len(run.epochs) == 1
    for name, s in run.scores.items():
        assert s.lost_announced == 0, (name, s)


async def test_fencing_twin_a_promoted_replica_without_the_fence_reuses_offsets(
    procs: Procs,
) -> None:
    """The fence itself, against a master and a replica: after the replica is promoted without
    the master's last writes, the fenced broker starts a new epoch; the unfenced one (plain
    redis://, no failover expected) continues the old epoch and gives a used offset again."""
    master = clusters.start_redis_node(procs)
    replica = clusters.start_redis_node(procs)
    master_url, replica_url = (f"redis://127.0.0.1:{n.port}" for n in (master, replica))
    r = redis.Redis(port=replica.port)
    m = redis.Redis(port=master.port)
    r.replicaof("127.0.0.1", master.port)

    class Fenced(RedisBroker):
        fenced = True

    options = BrokerOptions()
    on_master = Fenced(master_url, options)
    try:
        # replicating first: a master's replication ID also changes when its first replica syncs
        clusters.poll(lambda: r.info("replication").get("master_link_status") == "up")
        for n in range(5):
            await on_master.publish("ch", n)
        assert m.wait(1, 5000) == 1
        r.replicaof("NO", "ONE")  # promoted: its replication ID changes
        for n in range(5, 8):
            position, _ = await on_master.publish("ch", n)  # acked by the old master only
        assert position.offset == 8
    finally:
        await on_master.close()

    plain, fenced = RedisBroker(replica_url, options), Fenced(replica_url, options)
    try:
        page = await plain.history("ch", 0, 100)
        assert page.epoch == position.epoch and page.offset == 5  # the hazard: offset went back
        reuse, _ = await plain.publish("ch", "other")
        assert (reuse.epoch, reuse.offset) == (position.epoch, 6)  # offset 6 names two messages
        fresh = await fenced.history("ch", 0, 100)
        assert fresh.epoch != position.epoch  # the fence: a new epoch, recovered: false for all
    finally:
        r.close()
        m.close()


@pytest.mark.parametrize(
    "form",
    [
        "nats://{a}",
        "nats://{a},{b}",
        "redis+cluster://{a},{b}",
        "redis+sentinel://{a},{b}/mymaster",
    ],
)
def test_a_broker_nobody_answers_for_is_said_at_once(form: str) -> None:
    """Nothing listens: the hub exits with one line naming the refusal (issue: it used to wait
    10 s in silence and then say "timed out")."""
    url = form.format(a=f"127.0.0.1:{free_port()}", b=f"127.0.0.1:{free_port()}")
    done = subprocess.run(
        [sys.executable, "-m", "limpet", "hub", "--listen", f"127.0.0.1:{free_port()}", "--broker", url],
        env=limpet_env(), capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert done.returncode == 1, done
    assert "connection refused" in done.stderr.lower() or "Connection refused" in done.stderr
    assert "timed out" not in done.stderr and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr


async def test_hub_started_while_the_nats_cluster_forms_waits_for_it(procs: Procs) -> None:
    """A hub started with one server of three up gets no JetStream answer (no meta leader yet);
    it retries instead of exiting, and serves once the other two servers have joined."""
    cluster = clusters.start_nats_cluster(procs, running=1)
    port = free_port()
    hub = procs.limpet("hub", "--listen", f"127.0.0.1:{port}", "--broker", cluster.url)
    clusters.poll(
        lambda: hub.poll() is not None or "retrying" in procs.output(hub),
        timeout=30,
        what="the hub retrying JetStream setup",
    )
    assert hub.poll() is None, procs.output(hub)
    cluster.start(1)
    cluster.start(2)
    wait_listening("127.0.0.1", port, proc=hub, timeout=40)
    cluster.wait_stream_leader("LIMPET_HUB")
    assert "Traceback" not in procs.output(hub)


def test_hub_on_nats_without_jetstream_exits_with_one_line(procs: Procs) -> None:
    """A server without JetStream is not a forming cluster: the hub says so at once, in one
    line, and closes its NATS client first (no "Task was destroyed" noise after the error)."""
    exe = clusters.which_or_skip("nats-server")
    nats_port = free_port()
    procs.start([exe, "-a", "127.0.0.1", "-p", str(nats_port)], wait_for=("127.0.0.1", nats_port))
    hub = procs.limpet(
        "hub", "--listen", f"127.0.0.1:{free_port()}", "--broker", f"nats://127.0.0.1:{nats_port}"
    )
    assert hub.wait(timeout=30) == 1
    out = procs.output(hub)
    assert "JetStream is not enabled on the server" in out, out
    assert "Traceback" not in out and "Task was destroyed" not in out, out


def _other_master(cluster: clusters.RedisClusterNodes, key: str) -> clusters.RedisNode:
    source = cluster.master_of(key)
    return next(n for n in cluster.alive() if n is not source and n.info().get("role") == "master")


def _migrate_mid_stream(
    cluster: clusters.RedisClusterNodes,
) -> Callable[[str, Callable[[], int]], None]:
    """A ``fail`` for failover_run: the channel's slot moves to another master."""

    def fail(channel: str, acked: Callable[[], int]) -> None:
        key = slot_key(channel)
        cluster.migrate(key, _other_master(cluster, key))

    return fail


async def test_redis_cluster_slot_migrated_mid_stream_keeps_epoch_and_history(
    procs: Procs,
) -> None:
    """Resharding moves the channel's slot, keys and all, to another master mid-stream: the
    hubs follow the shard channel there and the new owner adopts the channel: one epoch, and
    nothing lost, not even with a notice (c, away during the move, recovers from history)."""
    cluster = clusters.start_redis_cluster(procs)
    reps = start_hub_procs(procs, cluster.url, 2, "--health-interval", "0.5")

    run = await failover_run(reps, _migrate_mid_stream(cluster))
    run.assert_sound()
    assert len(run.epochs) == 1, run.epochs
    for name, s in run.scores.items():
        assert s.lost_announced == 0, (name, s)


async def test_slot_migration_twin_without_adoption_the_history_is_wiped(procs: Procs) -> None:
    """Both channels' slots move to another master. The broker (fence with the writer's node
    ID) adopts its channel: same epoch, all five messages. The twin, fenced by replication ID
    alone, cannot tell a move from a failover: a new epoch and an empty history."""
    cluster = clusters.start_redis_cluster(procs)
    spec = parse_broker_url(cluster.url)

    class ReplicationIdOnly(RedisClusterBroker):
        migrates = False

    adopting = RedisClusterBroker(spec, BrokerOptions())
    twin = ReplicationIdOnly(spec, BrokerOptions())
    try:
        written = {}
        for channel in ("kept", "wiped"):
            for n in range(5):
                position, _ = await adopting.publish(channel, n)
            written[channel] = position
            cluster.migrate(slot_key(channel), _other_master(cluster, slot_key(channel)))
        kept = await adopting.history("kept", 0, 100)
        assert kept.position == written["kept"]
        assert [m.data for m in kept.messages] == [0, 1, 2, 3, 4]
        wiped = await twin.history("wiped", 0, 100)
        assert wiped.epoch != written["wiped"].epoch and wiped.messages == ()
    finally:
        await adopting.close()
        await twin.close()


async def test_redis_cluster_with_a_password(procs: Procs) -> None:
    """Every node requires a password: the hubs' command client, their per-master live links
    and the slot-table probe all log in (a run, a slot migrated in it, loses nothing); a wrong
    password is one line naming the refusal, not a traceback."""
    cluster = clusters.start_redis_cluster(procs, password="s3cret")
    reps = start_hub_procs(procs, cluster.url, 2, "--health-interval", "0.5")

    run = await failover_run(reps, _migrate_mid_stream(cluster))
    run.assert_sound()
    assert len(run.epochs) == 1

    wrong = cluster.url.replace(":s3cret@", ":n0tit@")
    hub = procs.limpet("hub", "--listen", f"127.0.0.1:{free_port()}", "--broker", wrong)
    assert hub.wait(timeout=30) != 0
    out = procs.output(hub)
    assert "Traceback" not in out and "Task was destroyed" not in out, out
    error = [line for line in out.splitlines() if line.startswith("limpet hub: error:")]
    assert len(error) == 1 and "s3cret" not in out and "n0tit" not in out, out
    assert "refused the login (a wrong password" in error[0], out


async def test_redis_cluster_over_tls_with_broker_ca(procs: Procs) -> None:
    """The cluster's client ports, bus and replication speak TLS with a private CA's
    certificates: the hubs reach every master through rediss+cluster:// and --broker-ca (the
    cluster answers TLS clients with the TLS ports), follow a slot migrated mid-stream, and
    lose nothing."""
    ca = TestCA(procs.tmp / "pki")
    cluster = clusters.start_redis_cluster(procs, tls=ca)
    reps = start_hub_procs(
        procs, cluster.url, 2, "--health-interval", "0.5", "--broker-ca", str(ca.path)
    )

    run = await failover_run(reps, _migrate_mid_stream(cluster))
    run.assert_sound()
    assert len(run.epochs) == 1
