"""SANS-IO (plain functions, no sockets): the PROXY protocol (HAProxy's, v1 text and v2 binary): parse the header an L4 load
balancer puts before the client's bytes, and build one to send on to a backend.

Spec: https://www.haproxy.org/download/2.6/doc/proxy-protocol.txt (sections 2.1 and 2.2).
``parse`` takes the bytes received so far and returns NEED_MORE, a ``Header`` (with how many
bytes it used), or raises ``ProxyProtocolError``. Limits: a v1 line is at most 107 bytes; a v2
header at most 16 + 65535, but we accept at most 16 + 216 + 1024 bytes of TLVs (ignored).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Final

V2_SIGNATURE: Final = b"\r\n\r\n\x00\r\nQUIT\n"
V1_PREFIX: Final = b"PROXY "
V1_MAX: Final = 107
V2_MAX_PAYLOAD: Final = 216 + 1024


class ProxyProtocolError(ValueError):
    """The bytes are not a valid PROXY protocol header."""


@dataclass(frozen=True, slots=True)
class Header:
    """What the balancer said: the client (source) and the address it connected to, or
    ``source=None`` for LOCAL / UNKNOWN (a health check of the balancer: use the real peer)."""

    version: int
    length: int  # bytes of the header; the client's data starts after them
    source: tuple[str, int] | None = None
    destination: tuple[str, int] | None = None


NEED_MORE: Final = None


def parse(data: bytes) -> Header | None:
    """A header at the start of ``data``; None when more bytes are needed to tell."""
    if data[:1] == b"\r":
        if not V2_SIGNATURE.startswith(data[:12]):
            raise ProxyProtocolError("no PROXY protocol header")
        return _parse_v2(data) if len(data) >= 16 else NEED_MORE
    if not data.startswith(V1_PREFIX[: len(data)]):
        raise ProxyProtocolError("no PROXY protocol header")
    return _parse_v1(data)


def _parse_v1(data: bytes) -> Header | None:
    end = data.find(b"\r\n", 0, V1_MAX)
    if end < 0:
        if len(data) >= V1_MAX:
            raise ProxyProtocolError("PROXY v1 line longer than 107 bytes")
        return NEED_MORE
    try:
        line = data[:end].decode("ascii")
    except UnicodeDecodeError:
        raise ProxyProtocolError("PROXY v1: a byte that is not ASCII in the line") from None
    parts = line.split(" ")
    if parts[0] != "PROXY" or len(parts) < 2:
        raise ProxyProtocolError("no PROXY protocol header")
    if parts[1] == "UNKNOWN":
        return Header(version=1, length=end + 2)
    if parts[1] not in ("TCP4", "TCP6") or len(parts) != 6:
        raise ProxyProtocolError(f"PROXY v1: bad line {line[:60]!r}")
    try:
        src, dst = ipaddress.ip_address(parts[2]), ipaddress.ip_address(parts[3])
        sport, dport = int(parts[4]), int(parts[5])
    except ValueError:
        raise ProxyProtocolError(f"PROXY v1: bad address in {line[:60]!r}") from None
    if any(getattr(a, "scope_id", None) for a in (src, dst)):
        # ipaddress takes "fe80::1%zone" (any text after the %): an address, not a zone, goes
        # into X-Forwarded-For and the logs (spec 2.1: the address in its canonical form)
        raise ProxyProtocolError(f"PROXY v1: an address with a zone id in {line[:60]!r}")
    if src.version != (4 if parts[1] == "TCP4" else 6) or dst.version != src.version:
        raise ProxyProtocolError(f"PROXY v1: {parts[1]} with {src.version}-addresses")
    if not (0 <= sport <= 65535 and 0 <= dport <= 65535) or any(
        p != str(int(p)) for p in parts[4:6]
    ):
        raise ProxyProtocolError(f"PROXY v1: bad port in {line[:60]!r}")
    return Header(1, end + 2, (str(src), sport), (str(dst), dport))


def _parse_v2(data: bytes) -> Header | None:
    ver_cmd, fam = data[12], data[13]
    length = int.from_bytes(data[14:16], "big")
    if ver_cmd >> 4 != 2:
        raise ProxyProtocolError("PROXY v2: version is not 2")
    if length > V2_MAX_PAYLOAD:
        raise ProxyProtocolError(f"PROXY v2: {length} bytes of addresses and TLVs is too many")
    if len(data) < 16 + length:
        return NEED_MORE
    cmd = ver_cmd & 0x0F
    total = 16 + length
    if cmd == 0x0:  # LOCAL: the balancer's own connection (health check)
        return Header(2, total)
    if cmd != 0x1:
        raise ProxyProtocolError(f"PROXY v2: unknown command {cmd}")
    body = data[16:total]
    family, transport = fam >> 4, fam & 0x0F
    if transport not in (0x1, 0x2) or family not in (0x1, 0x2):  # STREAM/DGRAM over INET/INET6
        return Header(2, total)  # UNSPEC or AF_UNIX: keep the real peer (spec 2.2)
    size = 4 if family == 0x1 else 16
    if length < 2 * size + 4:
        raise ProxyProtocolError("PROXY v2: address block too short")
    src = ipaddress.ip_address(body[:size])
    dst = ipaddress.ip_address(body[size : 2 * size])
    sport = int.from_bytes(body[2 * size : 2 * size + 2], "big")
    dport = int.from_bytes(body[2 * size + 2 : 2 * size + 4], "big")
    return Header(2, total, (str(src), sport), (str(dst), dport))


def build(version: int, source: tuple[str, int], destination: tuple[str, int]) -> bytes:
    """A PROXY header (v1 or v2) saying ``source`` connected to ``destination``."""
    src, dst = ipaddress.ip_address(source[0]), ipaddress.ip_address(destination[0])
    if src.version != dst.version:  # a v4 client on a v6 socket: say both as v6
        src, dst = _as_v6(src), _as_v6(dst)
    if version == 1:
        proto = "TCP4" if src.version == 4 else "TCP6"
        return f"PROXY {proto} {src} {dst} {source[1]} {destination[1]}\r\n".encode()
    fam = 0x11 if src.version == 4 else 0x21
    body = (
        src.packed + dst.packed + source[1].to_bytes(2, "big") + destination[1].to_bytes(2, "big")
    )
    return V2_SIGNATURE + bytes([0x21, fam]) + len(body).to_bytes(2, "big") + body


def _as_v6(addr: ipaddress.IPv4Address | ipaddress.IPv6Address) -> ipaddress.IPv6Address:
    if isinstance(addr, ipaddress.IPv6Address):
        return addr
    return ipaddress.IPv6Address("::ffff:" + str(addr))


def trusted(peer: str, ranges: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]) -> bool:
    """Whether ``peer`` (an address string) lies in one of ``ranges``."""
    try:
        addr = ipaddress.ip_address(peer)
    except ValueError:
        return False
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return any(addr.version == net.version and addr in net for net in ranges)


def networks(text: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    """``"10.0.0.0/8, ::1"`` -> networks; ValueError names the bad one."""
    out = []
    for item in text.replace(" ", "").split(","):
        if item:
            try:
                out.append(ipaddress.ip_network(item, strict=False))
            except ValueError:
                raise ValueError(f"not an address range: {item!r}") from None
    return tuple(out)
