"""PROXY protocol v1/v2 headers: parsed whole and byte by byte, built, refused when wrong."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from limpet.proxy.proxyproto import (
    V2_SIGNATURE,
    Header,
    ProxyProtocolError,
    build,
    networks,
    parse,
    trusted,
)

V1 = b"PROXY TCP4 192.0.2.7 10.0.0.1 56324 443\r\n"
V2_LOCAL = V2_SIGNATURE + bytes([0x20, 0x00, 0, 0])


@pytest.mark.parametrize(
    ("data", "header"),
    [
        (V1 + b"GET", Header(1, len(V1), ("192.0.2.7", 56324), ("10.0.0.1", 443))),
        (b"PROXY TCP6 2001:db8::1 ::1 1 2\r\n", Header(1, 32, ("2001:db8::1", 1), ("::1", 2))),
        (b"PROXY UNKNOWN\r\n", Header(1, 15)),
        (b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n", Header(1, 35)),
        (V2_LOCAL + b"xyz", Header(2, 16)),
    ],
)
def test_headers(data: bytes, header: Header) -> None:
    assert parse(data) == header


@pytest.mark.parametrize(
    "data",
    [
        b"GET / HTTP/1.1\r\n",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n",
        b"PROXY TCP4 ::1 ::1 1 2\r\n",  # v6 addresses said as TCP4
        b"PROXY TCP4 1.2.3.4 5.6.7.8 99999 2\r\n",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n",
        b"PROXY TCP4 " + b"1" * 120,  # no CRLF within 107 bytes
        b"\r\n\r\n\x00\r\nQUIX\n" + bytes(4),
        V2_SIGNATURE + bytes([0x11, 0x11, 0, 12]) + bytes(12),  # version 1 in a v2 header
        V2_SIGNATURE + bytes([0x21, 0x11, 0, 4]) + bytes(4),  # address block too short
        V2_SIGNATURE + bytes([0x21, 0x11, 0xFF, 0xFF]),  # 65535 bytes of TLVs: too many
    ],
)
def test_refused(data: bytes) -> None:
    with pytest.raises(ProxyProtocolError):
        parse(data)


@given(st.sampled_from([1, 2]), st.ip_addresses(v=4), st.ip_addresses(v=4),
       st.integers(0, 65535), st.integers(0, 65535), st.binary(max_size=20))  # fmt: skip
def test_build_then_parse_round_trips_whole_and_byte_by_byte(
    version: int, src: ipaddress.IPv4Address, dst: ipaddress.IPv4Address, sport: int,
    dport: int, tail: bytes,
) -> None:  # fmt: skip
    data = build(version, (str(src), sport), (str(dst), dport))
    header = parse(data + tail)
    assert header == Header(version, len(data), (str(src), sport), (str(dst), dport))
    for i in range(1, len(data)):
        assert parse(data[:i]) is None  # every prefix asks for more, none is misread


@given(st.ip_addresses(v=6), st.ip_addresses(v=6), st.sampled_from([1, 2]))
def test_v6_round_trips(src: ipaddress.IPv6Address, dst: ipaddress.IPv6Address, v: int) -> None:
    header = parse(build(v, (str(src), 1), (str(dst), 2)))
    assert header is not None and header.source == (str(src), 1)


def test_trusted_ranges() -> None:
    ranges = networks("10.0.0.0/8, ::1")
    assert trusted("10.1.2.3", ranges) and trusted("::1", ranges)
    assert trusted("::ffff:10.0.0.1", ranges)  # a v4 peer on a dual-stack socket
    assert not trusted("192.0.2.1", ranges) and not trusted("not-an-ip", ranges)
    with pytest.raises(ValueError, match="not an address range: 'nope'"):
        networks("10.0.0.0/8,nope")


@pytest.mark.parametrize(
    "data",
    [
        b"PROXY TCP6 fe80::1%eth0 ::1 1 2\r\n",  # a zone id
        b"PROXY TCP6 fe80::1%;x ::1 1 2\r\n",  # text after the %
        b"PROXY TCP6 ::1 fe80::1%25 1 2\r\n",
        "PROXY TCP6 fe80::1%\u00e9 ::1 1 2\r\n".encode(),  # not ASCII (was read as U+FFFD)
        b"PROXY TCP4 1.2.3.4\xff 5.6.7.8 1 2\r\n",
    ],
)
def test_a_v1_address_must_be_an_address(data: bytes) -> None:
    with pytest.raises(ProxyProtocolError):
        parse(data)


def test_twin_a_link_local_address_without_a_zone_is_taken() -> None:
    header = parse(b"PROXY TCP6 fe80::1 ::1 1 2\r\n")
    assert header is not None and header.source == ("fe80::1", 1)
