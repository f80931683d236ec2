"""Broker URLs -> a plain description of the backplane (sans-IO; no broker client imported).

    memory | memory://NAME
    redis://[USER:PASS@]HOST:PORT[/DB]   rediss://...   unix://PATH     one Redis (redis-py parses it)
    redis+cluster://[USER:PASS@]HOST:PORT[,HOST:PORT...]              Redis Cluster seed nodes
    redis+sentinel://[USER:PASS@]HOST:PORT[,HOST:PORT...]/MASTER[/DB] Sentinels and the master name
    nats://HOST:PORT[,HOST:PORT...]   tls://...                        one NATS server or a cluster

Every mistake is a UsageError that names the expected form, so `limpet hub --broker ...` fails
with one clear line instead of a client library's traceback.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal
from urllib.parse import unquote

from limpet.errors import UsageError

Kind = Literal["memory", "redis", "redis-cluster", "redis-sentinel", "nats"]

DEFAULT_PORTS = {
    "redis-cluster": 6379,
    "redis-sentinel": 26379,
    "nats": 4222,
}

FORMS = (
    "memory, redis://HOST:PORT[/DB], redis+cluster://HOST:PORT[,HOST:PORT...], "
    "redis+sentinel://HOST:PORT[,HOST:PORT...]/MASTER_NAME or nats://HOST:PORT[,HOST:PORT...]"
)


@dataclass(frozen=True)
class BrokerUrl:
    """What a ``--broker`` URL asks for. ``nodes`` are (host, port) seeds in the order given."""

    kind: Kind
    url: str
    nodes: tuple[tuple[str, int], ...] = ()
    #: redis+sentinel: the name Sentinel knows the master by
    master: str = ""
    db: int = 0
    username: str | None = None
    password: str | None = None
    tls: bool = False
    #: memory://NAME: several hubs of one process share the named backplane
    backplane: str = ""

    def __repr__(self) -> str:
        auth = ", auth=***" if self.password else ""
        master = f", master={self.master!r}" if self.master else ""
        return f"BrokerUrl({self.kind}, nodes={list(self.nodes)}{master}{auth})"

    def server_urls(self, scheme: str) -> list[str]:
        """One ``scheme://HOST:PORT`` per node (IPv6 hosts in brackets)."""
        return [f"{scheme}://{_join(host, port)}" for host, port in self.nodes]


def parse_broker_url(url: str) -> BrokerUrl:
    """Parse ``url``; raise UsageError saying which form was expected."""
    text = url.strip()
    scheme, sep, rest = text.partition("://")
    scheme = scheme.lower()
    if text == "memory" or scheme == "memory":
        return BrokerUrl("memory", text, backplane=rest if sep else "")
    if not sep:
        raise UsageError(f"--broker {url!r}: unknown broker; use {FORMS}")
    if scheme in ("redis", "rediss", "unix"):
        if "," in rest.partition("/")[0]:
            raise UsageError(
                f"--broker {url!r}: several hosts need redis+cluster://H:P,H:P... "
                "or redis+sentinel://H:P,H:P.../MASTER_NAME"
            )
        return BrokerUrl("redis", text, tls=scheme == "rediss")
    if scheme in ("redis+cluster", "rediss+cluster"):
        auth, hosts, path = _split(url, rest)
        if path.strip("/"):
            raise UsageError(
                f"--broker {url!r}: Redis Cluster has no databases or names after the hosts; "
                "use redis+cluster://HOST:PORT[,HOST:PORT...]"
            )
        nodes = _nodes(url, hosts, DEFAULT_PORTS["redis-cluster"])
        user, password = _auth(auth)
        return BrokerUrl(
            "redis-cluster", text, nodes, username=user, password=password,
            tls=scheme.startswith("rediss"),
        )  # fmt: skip
    if scheme in ("redis+sentinel", "rediss+sentinel"):
        auth, hosts, path = _split(url, rest)
        parts = [p for p in path.split("/") if p]
        if not parts:
            raise UsageError(
                f"--broker {url!r}: name the master Sentinel watches: "
                "redis+sentinel://HOST:PORT[,HOST:PORT...]/MASTER_NAME"
            )
        if len(parts) > 2 or (len(parts) == 2 and not parts[1].isdigit()):
            raise UsageError(
                f"--broker {url!r}: expected redis+sentinel://HOST:PORT[,...]/MASTER_NAME[/DB]"
            )
        nodes = _nodes(url, hosts, DEFAULT_PORTS["redis-sentinel"])
        user, password = _auth(auth)
        return BrokerUrl(
            "redis-sentinel", text, nodes, master=unquote(parts[0]),
            db=int(parts[1]) if len(parts) == 2 else 0, username=user, password=password,
            tls=scheme.startswith("rediss"),
        )  # fmt: skip
    if scheme in ("nats", "tls"):
        auth, hosts, path = _split(url, rest)
        if path.strip("/"):
            raise UsageError(f"--broker {url!r}: expected nats://HOST:PORT[,HOST:PORT...]")
        nodes = _nodes(url, hosts, DEFAULT_PORTS["nats"])
        user, password = _auth(auth)
        return BrokerUrl("nats", text, nodes, username=user, password=password, tls=scheme == "tls")
    raise UsageError(f"--broker {url!r}: unknown broker; use {FORMS}")


def _split(url: str, rest: str) -> tuple[str, str, str]:
    """``[auth@]hosts[/path]`` -> (auth, hosts, path)."""
    netloc, slash, path = rest.partition("/")
    auth, at, hosts = netloc.rpartition("@")
    if not at:
        auth, hosts = "", netloc
    if not hosts:
        raise UsageError(f"--broker {url!r}: no HOST:PORT given")
    return auth, hosts, slash + path


def _auth(auth: str) -> tuple[str | None, str | None]:
    if not auth:
        return None, None
    user, colon, password = auth.partition(":")
    if not colon:  # redis-style ``:password@`` has an empty user; ``token@`` is a password
        return None, unquote(user)
    return unquote(user) or None, unquote(password)


def _nodes(url: str, hosts: str, default_port: int) -> tuple[tuple[str, int], ...]:
    nodes: list[tuple[str, int]] = []
    for item in hosts.split(","):
        item = item.strip()
        if not item:
            raise UsageError(f"--broker {url!r}: an empty host in the list")
        if item.startswith("["):
            host, bracket, tail = item[1:].partition("]")
            if not bracket or (tail and not tail.startswith(":")):
                raise UsageError(f"--broker {url!r}: bad IPv6 host {item!r} (use [ADDR]:PORT)")
            port_text = tail[1:]
        elif item.count(":") > 1:
            raise UsageError(f"--broker {url!r}: put an IPv6 host in brackets: [{item}]:PORT")
        else:
            host, _, port_text = item.partition(":")
        if not host:
            raise UsageError(f"--broker {url!r}: an empty host in {item!r}")
        try:
            port = int(port_text) if port_text else default_port
        except ValueError:
            raise UsageError(f"--broker {url!r}: port of {item!r} is not a number") from None
        if not 0 < port <= 65535:
            raise UsageError(f"--broker {url!r}: port of {item!r} is out of range")
        if (host, port) not in nodes:
            nodes.append((host, port))
    return tuple(nodes)


def _join(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
