"""Shared fixtures: process ownership, and real broker servers (redis-server, nats-server)."""

from __future__ import annotations

import os
from collections.abc import Iterator

# A compiled module built from other sources than the ones beside it must fail the suite, not
# quietly run the reference twice (limpet.proxy.wire.stamps); set before limpet is imported, and
# inherited by every process the tests start.
os.environ.setdefault("LIMPET_STRICT_BUILD", "1")

import pytest
from hypothesis import HealthCheck, settings

from tests.support.procs import Procs, free_port, which_or_skip

# Property tests count examples, not milliseconds: a busy 2-core CI machine must not turn a slow
# example into a failure (no timing assertions, see the README).
settings.register_profile(
    "limpet", deadline=None, suppress_health_check=[HealthCheck.too_slow], print_blob=True
)
settings.load_profile("limpet")


@pytest.fixture
def procs() -> Iterator[Procs]:
    """Every process a test starts, terminated at the end of the test."""
    owner = Procs()
    try:
        yield owner
    finally:
        owner.close()


@pytest.fixture(scope="session")
def session_procs() -> Iterator[Procs]:
    owner = Procs()
    try:
        yield owner
    finally:
        owner.close()


class BrokerServer:
    """A broker server process the test can stop and start again on the same port."""

    def __init__(self, owner: Procs, argv: list[str], host: str, port: int, url: str) -> None:
        self.owner, self.argv, self.host, self.port, self.url = owner, argv, host, port, url
        self.proc = owner.start(argv, wait_for=(host, port))

    def stop(self) -> None:
        import signal

        self.owner.kill(self.proc, signal.SIGKILL)

    def start(self) -> None:
        self.proc = self.owner.start(self.argv, wait_for=(self.host, self.port))


def start_redis(owner: Procs) -> BrokerServer:
    exe = which_or_skip("redis-server", "/usr/bin/redis-server")
    port = free_port()
    argv = [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    return BrokerServer(owner, argv, "127.0.0.1", port, f"redis://127.0.0.1:{port}")


def start_nats(owner: Procs) -> BrokerServer:
    exe = which_or_skip("nats-server")
    port = free_port()
    store = owner.tmp / f"nats-{port}"
    argv = [exe, "-a", "127.0.0.1", "-p", str(port), "-js", "-sd", str(store)]
    return BrokerServer(owner, argv, "127.0.0.1", port, f"nats://127.0.0.1:{port}")


@pytest.fixture(scope="session")
def redis_server(session_procs: Procs) -> BrokerServer:
    """One real redis-server for the session, on a free loopback port."""
    return start_redis(session_procs)


@pytest.fixture(scope="session")
def nats_server(session_procs: Procs) -> BrokerServer:
    """One real nats-server with JetStream for the session, on a free loopback port."""
    return start_nats(session_procs)
