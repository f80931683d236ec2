"""Real broker clusters on loopback for tests: Redis Cluster (3 masters + 3 replicas), a Redis
Sentinel group (master, 2 replicas, 3 Sentinels), a NATS cluster (3 servers, routes, JetStream).

Every process belongs to a ``Procs`` (so it is cleaned up); every wait polls the servers' own
status (CLUSTER INFO, SENTINEL, /jsz) with a deadline, never a fixed sleep.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import redis

from tests.support.certs import TestCA
from tests.support.procs import Procs, free_port, which_or_skip

HOST = "127.0.0.1"


def poll(predicate: Callable[[], Any], *, timeout: float = 20.0, what: str = "") -> Any:
    """Call ``predicate`` until it returns something truthy (errors count as no); bounded."""
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            value = predicate()
            if value:
                return value
            last = value
        except Exception as exc:
            last = exc
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what or predicate} (last: {last!r})")
        time.sleep(0.05)


def _redis(port: int, password: str | None = None) -> redis.Redis:
    return redis.Redis(HOST, port, password=password, socket_timeout=2, socket_connect_timeout=1)


@dataclass
class RedisNode:
    port: int
    proc: subprocess.Popen[bytes]
    password: str | None = None

    def client(self) -> redis.Redis:
        return _redis(self.port, self.password)

    def info(self, section: str = "replication") -> dict[str, Any]:
        with self.client() as r:
            return dict(r.info(section))


@dataclass
class RedisClusterNodes:
    """Three masters with one replica each, made with ``redis-cli --cluster create``."""

    procs: Procs
    nodes: list[RedisNode] = field(default_factory=list)
    password: str | None = None
    #: with TLS, each node's TLS client port (the URL's); ``nodes`` keep the plain ports the
    #: test administers the cluster through
    tls_ports: list[int] = field(default_factory=list)

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        if self.tls_ports:
            return f"rediss+cluster://{auth}" + ",".join(f"{HOST}:{p}" for p in self.tls_ports[:3])
        return f"redis+cluster://{auth}" + ",".join(f"{HOST}:{n.port}" for n in self.nodes[:3])

    def alive(self) -> list[RedisNode]:
        return [n for n in self.nodes if n.proc.poll() is None]

    def master_of(self, key: str) -> RedisNode:
        """The node serving ``key``'s slot now (asked of a live node)."""
        for node in self.alive():
            try:
                with node.client() as r:
                    slot = int(r.execute_command("CLUSTER", "KEYSLOT", key))
                    for start, end, primary, *_ in r.execute_command("CLUSTER", "SLOTS"):
                        if start <= slot <= end:
                            port = int(primary[1])
                            return next(n for n in self.nodes if n.port == port)
            except redis.RedisError:
                continue
        raise RuntimeError(f"no live node knows the master of {key!r}")

    def replica_of(self, master: RedisNode) -> RedisNode:
        for node in self.alive():
            info = node.info()
            if info.get("role") == "slave" and int(info.get("master_port", 0)) == master.port:
                return node
        raise RuntimeError(f"no replica of :{master.port}")

    def migrate(self, key: str, to: RedisNode) -> None:
        """Move ``key``'s slot, with its keys, to master ``to`` while clients keep using it: the
        steps ``redis-cli --cluster reshard`` takes for one slot (IMPORTING/MIGRATING, MIGRATE
        in batches, then SETSLOT NODE on every master)."""
        source = self.master_of(key)
        assert source is not to, "the slot is already there"
        with source.client() as src, to.client() as dst:
            slot = int(src.execute_command("CLUSTER", "KEYSLOT", key))
            src_id, dst_id = (
                src.execute_command("CLUSTER", "MYID"),
                dst.execute_command("CLUSTER", "MYID"),
            )
            dst.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", src_id)
            src.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", dst_id)
            while keys := src.execute_command("CLUSTER", "GETKEYSINSLOT", slot, 10):
                auth = ["AUTH", self.password] if self.password else []
                # with tls-cluster, MIGRATE dials the target over TLS: its TLS port
                port = self.tls_ports[self.nodes.index(to)] if self.tls_ports else to.port
                src.execute_command("MIGRATE", HOST, port, "", 0, 5000, *auth, "KEYS", *keys)
            for node in self.alive():
                with node.client() as r:
                    if r.info("replication").get("role") == "master":
                        r.execute_command("CLUSTER", "SETSLOT", slot, "NODE", dst_id)
        poll(lambda: self.master_of(key) is to, what=f"slot of {key!r} served by :{to.port}")

    def wait_ok(self, timeout: float = 30.0) -> None:
        def ok() -> bool:
            for node in self.alive():
                with node.client() as r:
                    text = r.execute_command("CLUSTER", "INFO").decode()
                    if "cluster_state:ok" not in text:
                        return False
            return True

        poll(ok, timeout=timeout, what="cluster_state:ok on every live node")

    def wait_promoted(self, key: str, dead: RedisNode, timeout: float = 30.0) -> RedisNode:
        """Wait until a live node serves ``key``'s slot in place of ``dead``; return it."""
        new: RedisNode = poll(
            lambda: (m := self.master_of(key)) is not dead and m.proc.poll() is None and m,
            timeout=timeout,
            what=f"a replica promoted in place of :{dead.port}",
        )
        self.wait_ok(timeout)
        return new


def start_redis_cluster(
    procs: Procs,
    *,
    masters: int = 3,
    node_timeout_ms: int = 1000,
    password: str | None = None,
    tls: TestCA | None = None,
) -> RedisClusterNodes:
    """``masters`` masters with a replica each; with ``password``, every node requires it (and
    the replicas use it to sync); with ``tls``, the cluster bus and replication speak TLS and
    every node has a TLS client port too (certificates of that CA)."""
    exe = which_or_skip("redis-server", "/usr/bin/redis-server")
    cli = which_or_skip("redis-cli", "/usr/bin/redis-cli")
    cluster = RedisClusterNodes(procs, password=password)
    auth = ["--requirepass", password, "--masterauth", password] if password else []
    secure: list[str] = []
    if tls:
        leaf = tls.leaf(HOST, stem="redis-cluster")
        # fmt: off
        secure = ["--tls-cert-file", str(leaf.cert), "--tls-key-file", str(leaf.key),
                  "--tls-ca-cert-file", str(tls.path), "--tls-auth-clients", "no",
                  "--tls-cluster", "yes", "--tls-replication", "yes"]
        # fmt: on
    for _ in range(masters * 2):
        port = free_port()
        if tls:
            cluster.tls_ports.append(free_port())
        tls_port = ["--tls-port", str(cluster.tls_ports[-1]), *secure] if tls else []
        argv = [
            exe, "--port", str(port), *tls_port, "--bind", HOST, "--save", "", "--appendonly", "no",
            "--dir", str(procs.tmp), "--dbfilename", f"dump-{port}.rdb", "--cluster-enabled", "yes",
            "--cluster-port", str(free_port()),  # else port + 10000, maybe taken or > 65535
            "--cluster-config-file", f"nodes-{port}.conf",
            "--cluster-node-timeout", str(node_timeout_ms),
            # a replica may be promoted however long ago it last heard its master
            "--cluster-replica-validity-factor", "0",
            "--cluster-require-full-coverage", "no", *auth,
        ]  # fmt: skip
        proc = procs.start(argv, wait_for=(HOST, port))
        cluster.nodes.append(RedisNode(port, proc, password))
    cli_auth = ["-a", password, "--no-auth-warning"] if password else []
    create = subprocess.run(
        [cli, *cli_auth, "--cluster", "create", *[f"{HOST}:{n.port}" for n in cluster.nodes],
         "--cluster-replicas", "1", "--cluster-yes"],
        capture_output=True, timeout=60, check=False,
    )  # fmt: skip
    if create.returncode != 0:
        raise RuntimeError(f"redis-cli --cluster create failed:\n{create.stdout.decode()}")
    cluster.wait_ok()
    return cluster


@dataclass
class SentinelGroup:
    """One master, two replicas, three Sentinels watching ``name``."""

    procs: Procs
    name: str
    redis: list[RedisNode]
    sentinels: list[RedisNode]

    @property
    def url(self) -> str:
        return (
            "redis+sentinel://"
            + ",".join(f"{HOST}:{s.port}" for s in self.sentinels)
            + f"/{self.name}"
        )

    def master(self) -> RedisNode:
        for s in self.sentinels:
            try:
                with _redis(s.port) as r:
                    _, port = r.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.name)
                    return next(n for n in self.redis if n.port == int(port))
            except (redis.RedisError, TypeError):
                continue
        raise RuntimeError("no Sentinel answers")

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Every Sentinel knows both replicas and the two other Sentinels (so it can vote)."""

        def ready() -> bool:
            for s in self.sentinels:
                with _redis(s.port) as r:
                    fields = r.sentinel_master(self.name)
                    if int(fields["num-slaves"]) < 2 or int(fields["num-other-sentinels"]) < 2:
                        return False
            return True

        poll(ready, timeout=timeout, what="Sentinels to know the replicas and each other")

    def wait_failover(self, dead: RedisNode, timeout: float = 30.0) -> RedisNode:
        def promoted() -> RedisNode | None:
            new = self.master()
            if new is dead or new.proc.poll() is not None:
                return None
            return new if new.info().get("role") == "master" else None

        return poll(promoted, timeout=timeout, what=f"failover away from :{dead.port}")  # type: ignore[no-any-return]


def start_sentinel_group(procs: Procs, *, name: str = "limpet") -> SentinelGroup:
    exe = which_or_skip("redis-server", "/usr/bin/redis-server")
    nodes: list[RedisNode] = []
    master_port = 0
    for i in range(3):
        port = free_port()
        argv = [exe, "--port", str(port), "--bind", HOST, "--save", "", "--appendonly", "no",
                "--dir", str(procs.tmp), "--dbfilename", f"dump-{port}.rdb"]  # fmt: skip
        if i:
            argv += ["--replicaof", HOST, str(master_port)]
        else:
            master_port = port
        nodes.append(RedisNode(port, procs.start(argv, wait_for=(HOST, port))))
    sentinels: list[RedisNode] = []
    for _ in range(3):
        port = free_port()
        conf = procs.tmp / f"sentinel-{port}.conf"
        conf.write_text(
            f"port {port}\nbind {HOST}\ndir {procs.tmp}\n"
            f"sentinel monitor {name} {HOST} {master_port} 2\n"
            f"sentinel down-after-milliseconds {name} 1000\n"
            f"sentinel failover-timeout {name} 5000\n"
            f"sentinel parallel-syncs {name} 2\n"
        )
        proc = procs.start([exe, str(conf), "--sentinel"], wait_for=(HOST, port))
        sentinels.append(RedisNode(port, proc))
    group = SentinelGroup(procs, name, nodes, sentinels)
    group.wait_ready()
    return group


@dataclass
class NatsCluster:
    """Three nats-server processes with routes to each other and JetStream."""

    procs: Procs
    ports: list[int]
    monitors: list[int]
    argvs: list[list[str]]
    servers: list[subprocess.Popen[bytes]]

    @property
    def url(self) -> str:
        return "nats://" + ",".join(f"{HOST}:{p}" for p in self.ports)

    def varz(self, i: int, path: str) -> dict[str, Any]:
        with urllib.request.urlopen(f"http://{HOST}:{self.monitors[i]}/{path}", timeout=2) as r:
            return dict(json.load(r))

    def clients(self, i: int) -> int:
        return int(self.varz(i, "connz")["num_connections"])

    def wait_ready(self, timeout: float = 30.0) -> None:
        def ready() -> bool:
            for i, proc in enumerate(self.servers):
                if proc.poll() is not None:
                    continue
                jsz = self.varz(i, "jsz")
                meta = jsz.get("meta_cluster") or {}
                if not meta.get("leader") or int(meta.get("cluster_size", 0)) < 3:
                    return False
            return True

        poll(ready, timeout=timeout, what="a JetStream meta leader on every server")

    def wait_stream_leader(self, stream: str, timeout: float = 30.0) -> None:
        """Wait until a live server reports ``stream`` with a leader and all replicas current."""

        def led() -> bool:
            for i, proc in enumerate(self.servers):
                if proc.poll() is not None:
                    continue
                jsz = self.varz(i, "jsz?streams=true")
                for account in jsz.get("account_details", []):
                    for detail in account.get("stream_detail", []):
                        cluster = detail.get("cluster") or {}
                        if detail.get("name") == stream and cluster.get("leader"):
                            return True
            return False

        poll(led, timeout=timeout, what=f"a leader for stream {stream}")

    def kill(self, i: int) -> None:
        self.procs.kill(self.servers[i], signal.SIGKILL)

    def start(self, i: int) -> None:
        """Start server ``i`` (the next one not yet started) and wait until it listens."""
        assert i == len(self.servers), "servers start in order"
        self.servers.append(self.procs.start(self.argvs[i], wait_for=(HOST, self.ports[i])))


def start_nats_cluster(procs: Procs, size: int = 3, *, running: int | None = None) -> NatsCluster:
    """``size`` routed JetStream servers; with ``running`` only the first few are started (the
    rest with ``NatsCluster.start``) and nothing waits for a meta leader."""
    exe = which_or_skip("nats-server")
    ports = [free_port() for _ in range(size)]
    routes = [free_port() for _ in range(size)]
    monitors = [free_port() for _ in range(size)]
    argvs = []
    for i in range(size):
        others = ",".join(f"nats://{HOST}:{routes[j]}" for j in range(size) if j != i)
        argvs.append([
            exe, "-a", HOST, "-p", str(ports[i]), "-m", str(monitors[i]),
            "-js", "-sd", str(procs.tmp / f"nats-{i}"), "--server_name", f"n{i}",
            "--cluster_name", "limpet", "--cluster", f"nats://{HOST}:{routes[i]}",
            "--routes", others,
        ])  # fmt: skip
    cluster = NatsCluster(procs, ports, monitors, argvs, [])
    for i in range(size if running is None else running):
        cluster.start(i)
    if running is None:
        try:
            cluster.wait_ready()
        except TimeoutError as exc:
            dead = [procs.output(p)[-2000:] for p in cluster.servers if p.poll() is not None]
            raise RuntimeError(f"{exc}; servers that exited:\n" + "\n".join(dead)) from exc
    return cluster


def start_redis_node(procs: Procs, *extra: str) -> RedisNode:
    """One redis-server writing nothing outside the test's directory (a replica's full sync
    makes its master write an RDB file)."""
    exe = which_or_skip("redis-server", "/usr/bin/redis-server")
    port = free_port()
    argv = [exe, "--port", str(port), "--bind", HOST, "--save", "", "--appendonly", "no",
            "--dir", str(procs.tmp), "--dbfilename", f"dump-{port}.rdb", *extra]  # fmt: skip
    return RedisNode(port, procs.start(argv, wait_for=(HOST, port)))
