"""DNS discovery: A/AAAA records of a headless Service, or its SRV records, re-resolved on an
interval with dnspython's asyncio resolver.

A headless Service (``clusterIP: None``) answers with one record per ready pod, so the answer
itself is the pool. Resolution failures keep the last good snapshot: a DNS hiccup must not empty
the pool. A name that does not exist (NXDOMAIN) or has no records is an empty pool.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from typing import Literal

import dns.asyncresolver
import dns.exception
import dns.rdatatype
import dns.resolver

from limpet.discovery.base import Endpoint, Snapshot, join_hostport, snapshot
from limpet.errors import DiscoveryError

log = logging.getLogger("limpet.discovery.dns")

Record = Literal["A", "AAAA", "A+AAAA", "SRV"]


class DnsDiscovery:
    """Resolve ``name`` every ``interval`` seconds; yield a snapshot when the answer changes.

    ``record``: ``A``, ``AAAA`` or ``A+AAAA`` need ``port``; ``SRV`` takes ports from the records
    and ids from the targets (stable pod names under a headless Service).
    """

    def __init__(
        self,
        name: str,
        port: int | None = None,
        *,
        record: Record = "A+AAAA",
        interval: float = 5.0,
        nameservers: Sequence[str] | None = None,
        nameserver_port: int = 53,
        timeout: float = 2.0,
    ) -> None:
        if record not in ("A", "AAAA", "A+AAAA", "SRV"):
            raise DiscoveryError(f"DNS record type {record!r}: expected A, AAAA, A+AAAA or SRV")
        if record != "SRV" and port is None:
            raise DiscoveryError(f"DNS discovery of {name} by {record} records needs a port")
        if interval <= 0:
            raise DiscoveryError("DNS re-resolve interval must be positive")
        self.name, self.port, self.record, self.interval = name, port, record, interval
        self.resolver = dns.asyncresolver.Resolver(configure=nameservers is None)
        if nameservers is not None:
            self.resolver.nameservers = list(nameservers)
            self.resolver.port = nameserver_port
        # short names ("chat.web") rely on the pod's resolv.conf search list and ndots, as
        # every other resolver in the cluster does
        self.resolver.use_search_by_default = True
        self.resolver.lifetime = timeout
        self.resolver.cache = None

    def __repr__(self) -> str:
        return f"DnsDiscovery({self.name!r}, record={self.record}, interval={self.interval})"

    async def _addresses(self, name: str) -> list[str]:
        types = {"A": ["A"], "AAAA": ["AAAA"]}.get(self.record, ["A", "AAAA"])
        found: list[str] = []
        for rdtype in types:
            try:
                answer = await self.resolver.resolve(name, rdtype)
            except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
                continue
            found += [r.to_text() for r in answer]
        return found

    async def resolve(self) -> Snapshot:
        """One resolution; raises dns.exception.DNSException on failure (timeouts, SERVFAIL)."""
        if self.record != "SRV":
            assert self.port is not None
            addresses = await self._addresses(self.name)
            return snapshot(
                Endpoint(id=join_hostport(a, self.port), address=join_hostport(a, self.port))
                for a in addresses
            )
        try:
            answer = await self.resolver.resolve(self.name, "SRV")
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return ()
        endpoints: list[Endpoint] = []
        for srv in answer:
            target = srv.target.to_text(omit_final_dot=True)
            addresses = await self._addresses(srv.target.to_text())
            for a in addresses or [target]:
                ident = target if len(addresses) <= 1 else f"{target}/{a}"
                endpoints.append(Endpoint(id=ident, address=join_hostport(a, srv.port)))
        return snapshot(endpoints)

    async def watch(self) -> AsyncIterator[Snapshot]:
        last: Snapshot | None = None
        while True:
            try:
                current = await self.resolve()
            except dns.exception.DNSException as exc:
                log.warning("resolving %s failed (%s); keeping the last answer", self.name, exc)
            else:
                if current != last:
                    log.info("%s resolves to %d endpoint(s)", self.name, len(current))
                    last = current
                    yield current
            await asyncio.sleep(self.interval)
