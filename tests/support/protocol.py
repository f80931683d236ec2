"""The proxy's protocol classes on in-memory transports: a real Downstream, Exchange and
UpstreamConnection (either build, limpet.proxy.builds) fed bytes the way the loop would feed
them. Used by tests/unit/proxy (no sockets)."""

from __future__ import annotations

import argparse

from limpet.proxy import cli, http1
from limpet.proxy.server import ProxyServer
from limpet.proxy.upstream import UpstreamConnection


class Transport:
    """What a protocol class uses of an asyncio transport; records what was written."""

    def __init__(self) -> None:
        self.out: list[bytes] = []
        self.closed = False
        self.reading = True
        self.eof = False  # write_eof was called
        self.can_eof = True  # False: like a TLS transport, no half-close

    def write(self, data: bytes) -> None:
        self.out.append(data)

    def take(self) -> bytes:
        data, self.out = b"".join(self.out), []
        return data

    def get_extra_info(self, key: str, default: object = None) -> object:
        return ("127.0.0.1", 5555) if key == "peername" else default

    def is_closing(self) -> bool:
        return self.closed

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def close(self) -> None:
        self.closed = True

    abort = close

    def can_write_eof(self) -> bool:
        return self.can_eof

    def write_eof(self) -> None:
        self.eof = True


class Rig:
    """One downstream connection and one idle upstream connection to backend b0."""

    def __init__(
        self,
        protocol: type[http1.Downstream] = http1.Downstream,
        connection: type[UpstreamConnection] = UpstreamConnection,
    ) -> None:
        self.connection = connection
        parser = argparse.ArgumentParser()
        cli.configure(parser)
        args = parser.parse_args(
            [
                "--backend",
                "b0=http://127.0.0.1:9",
                "--secret",
                "s",
                "--no-health",
                "--affinity",
                "none",
            ]
        )
        self.server = ProxyServer(cli.resolve(args), b"s", admin=False)
        self.pool = self.server.pools["default"].upstreams["b0"]
        self.down = protocol(self.server.context)
        self.client = Transport()
        self.down.connection_made(self.client)  # type: ignore[arg-type]
        self.conn, self.backend = self.upstream()

    def upstream(self) -> tuple[UpstreamConnection, Transport]:
        conn = self.connection(self.pool)
        transport = Transport()
        conn.connection_made(transport)  # type: ignore[arg-type]
        self.pool.put(conn)
        return conn, transport
