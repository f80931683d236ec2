"""DNS discovery against a real DNS server process on loopback: add, remove, SRV, failures."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import dns.exception
import pytest

from limpet.discovery.base import Endpoint, Snapshot
from limpet.discovery.dns import DnsDiscovery
from limpet.errors import DiscoveryError
from tests.support.procs import Procs, free_port

SERVER = Path(__file__).with_name("dns_server.py")
NAME = "chat.web.svc.cluster.local."


class Zone:
    def __init__(self, procs: Procs) -> None:
        self.path = procs.tmp / "zone.json"
        self.write({})
        self.port = free_port()
        self.proc = procs.start(
            [sys.executable, str(SERVER), "127.0.0.1", str(self.port), str(self.path)],
            wait_for=("127.0.0.1", self.port),
        )

    def write(self, zone: dict[str, dict[str, list[object]]]) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(zone))
        tmp.replace(self.path)  # atomic: the server never reads half a file

    def discovery(self, **kwargs: object) -> DnsDiscovery:
        return DnsDiscovery(
            NAME,
            nameservers=["127.0.0.1"],
            nameserver_port=self.port,
            interval=0.05,
            **kwargs,  # type: ignore[arg-type]
        )


@pytest.fixture
def zone(procs: Procs) -> Zone:
    return Zone(procs)


async def next_snapshot(it: AsyncIterator[Snapshot]) -> Snapshot:
    return await asyncio.wait_for(it.__anext__(), timeout=10)


async def test_a_records_join_and_leave(zone: Zone) -> None:
    zone.write({NAME: {"A": ["127.0.0.2", "127.0.0.3"]}})
    it = zone.discovery(port=8080, record="A").watch()
    assert await next_snapshot(it) == (
        Endpoint("127.0.0.2:8080", "127.0.0.2:8080"),
        Endpoint("127.0.0.3:8080", "127.0.0.3:8080"),
    )
    zone.write({NAME: {"A": ["127.0.0.3", "127.0.0.4"]}})
    assert [e.address for e in await next_snapshot(it)] == ["127.0.0.3:8080", "127.0.0.4:8080"]
    zone.write({})  # the Service is gone: NXDOMAIN is an empty pool
    assert await next_snapshot(it) == ()
    await it.aclose()


async def test_a_and_aaaa(zone: Zone) -> None:
    zone.write({NAME: {"A": ["127.0.0.2"], "AAAA": ["::1"]}})
    it = zone.discovery(port=80).watch()
    assert [e.address for e in await next_snapshot(it)] == ["127.0.0.2:80", "[::1]:80"]
    await it.aclose()


async def test_srv_targets_give_ids_and_ports(zone: Zone) -> None:
    zone.write(
        {
            NAME: {"SRV": [[0, 50, 3000, "pod-0." + NAME], [0, 50, 3001, "pod-1." + NAME]]},
            "pod-0." + NAME: {"A": ["127.0.0.10"]},
            "pod-1." + NAME: {"A": ["127.0.0.11"]},
        }
    )
    it = zone.discovery(record="SRV").watch()
    first = await next_snapshot(it)
    assert [(e.id, e.address) for e in first] == [
        ("pod-0." + NAME.rstrip("."), "127.0.0.10:3000"),
        ("pod-1." + NAME.rstrip("."), "127.0.0.11:3001"),
    ]
    zone.write(
        {
            NAME: {"SRV": [[0, 50, 3001, "pod-1." + NAME]]},
            "pod-1." + NAME: {"A": ["127.0.0.11"]},
        }
    )
    assert [e.id for e in await next_snapshot(it)] == ["pod-1." + NAME.rstrip(".")]
    await it.aclose()


async def test_server_failure_keeps_the_last_answer(zone: Zone, procs: Procs) -> None:
    zone.write({NAME: {"A": ["127.0.0.2"]}})
    discovery = zone.discovery(port=80, record="A")
    it = discovery.watch()
    assert len(await next_snapshot(it)) == 1
    zone.path.write_text("{broken")  # the server answers SERVFAIL now
    with pytest.raises(dns.exception.DNSException):
        await discovery.resolve()
    # the watch does not yield an empty pool on failure; it yields again once DNS recovers
    zone.write({NAME: {"A": ["127.0.0.2", "127.0.0.5"]}})
    assert len(await next_snapshot(it)) == 2
    await it.aclose()


def test_bad_arguments_are_clear() -> None:
    with pytest.raises(DiscoveryError, match="needs a port"):
        DnsDiscovery("x", record="A")
    with pytest.raises(DiscoveryError, match="expected A"):
        DnsDiscovery("x", 80, record="MX")  # type: ignore[arg-type]
