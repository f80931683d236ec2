"""Rewriting the sid in handshake responses: polling payloads and WebSocket frames (RFC 6455)."""

from __future__ import annotations

import json

import pytest

from limpet.affinity.engineio import (
    OpenFrameRewriter,
    OpenPacketError,
    encode_frame_header,
    rewrite_open_frame,
    rewrite_open_payload,
)

OPEN = (
    b'0{"sid":"AbCdEfGhIjKlMnOpQrSt","upgrades":["websocket"],'
    b'"pingTimeout":20000,"pingInterval":25000,"maxPayload":1000000}'
)


def mint(sid: str) -> str:
    return f"{sid}.TAG"


def handshake_of(packet: bytes) -> dict[str, object]:
    assert packet[:1] == b"0"
    result: dict[str, object] = json.loads(packet[1:])
    return result


# --- polling payloads ----------------------------------------------------------------------------


def test_polling_open_packet_is_rewritten_and_keeps_every_other_field() -> None:
    out = rewrite_open_payload(OPEN, mint)
    before, after = handshake_of(OPEN), handshake_of(out)
    assert after.pop("sid") == "AbCdEfGhIjKlMnOpQrSt.TAG"
    before.pop("sid")
    assert after == before
    assert len(out) == len(OPEN) + len(".TAG")  # the caller's new Content-Length


def test_polling_payload_with_several_packets_rewrites_only_the_open_packet() -> None:
    body = OPEN + b"\x1e40\x1e4hello\x1eb" + b"AAEC"
    out = rewrite_open_payload(body, mint)
    first, rest = out.split(b"\x1e", 1)
    assert handshake_of(first)["sid"] == "AbCdEfGhIjKlMnOpQrSt.TAG"
    assert rest == b"40\x1e4hello\x1ebAAEC"


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"4hello",
        b'0{"sid":1}',
        b"0[1,2]",
        b"0{not json",
        b'0{"nosid":"x"}',
        b"\xff\xfe",
        b'___eio[0]("0{\\"sid\\":\\"x\\"}");',  # JSONP: not spoken in engineio mode
        b'\x1e0{"sid":"x"}',
    ],
)
def test_polling_bodies_without_an_open_packet_are_errors(body: bytes) -> None:
    with pytest.raises(OpenPacketError):
        rewrite_open_payload(body, mint)


def test_non_ascii_handshake_fields_survive() -> None:
    body = '0{"sid":"s1","note":"héllo ✓"}'.encode()
    assert handshake_of(rewrite_open_payload(body, mint)) == {"sid": "s1.TAG", "note": "héllo ✓"}


# --- WebSocket frames ----------------------------------------------------------------------------


def frame(payload: bytes, opcode: int = 0x1, *, fin: bool = True) -> bytes:
    return encode_frame_header(opcode, len(payload), fin=fin) + payload


def unframe(data: bytes) -> tuple[int, bytes, bytes]:
    """(opcode, payload, rest) of the first frame: an independent reader for the tests."""
    first, second = data[0], data[1]
    assert not second & 0x80
    n, at = second & 0x7F, 2
    if n == 126:
        n, at = int.from_bytes(data[2:4], "big"), 4
        assert n >= 126  # minimal encoding
    elif n == 127:
        n, at = int.from_bytes(data[2:10], "big"), 10
        assert n >= 1 << 16
    return first & 0x0F, data[at : at + n], data[at + n :]


@pytest.mark.parametrize(
    ("length", "header_len"),
    [(0, 2), (125, 2), (126, 4), (65535, 4), (65536, 10), (70000, 10)],
)
def test_frame_header_length_classes(length: int, header_len: int) -> None:
    header = encode_frame_header(0x1, length)
    assert len(header) == header_len
    assert header[0] == 0x81
    opcode, payload, rest = unframe(header + b"x" * length)
    assert (opcode, len(payload), rest) == (0x1, length, b"")


@pytest.mark.parametrize("pad", [0, 100, 200, 70000])
def test_open_frame_is_reframed_across_length_classes(pad: int) -> None:
    """The token grows the payload: 125 -> 129 crosses from 7-bit to 16-bit lengths, and so on."""
    packet = b'0{"sid":"s","pad":"' + b"p" * pad + b'"}'
    out, rest = rewrite_open_frame(frame(packet) + b"TAIL", mint)  # type: ignore[misc]
    opcode, payload, after = unframe(out)
    assert (opcode, after, rest) == (0x1, b"", b"TAIL")
    assert handshake_of(payload)["sid"] == "s.TAG"
    assert len(payload) == len(packet) + 4


def test_crossing_the_7bit_boundary_exactly() -> None:
    packet = b'0{"sid":"s","p":"' + b"x" * 100 + b'"}'
    packet = packet[:-2] + b"x" * (124 - len(packet)) + b'"}'
    assert len(packet) == 124
    out, _ = rewrite_open_frame(frame(packet), mint)  # type: ignore[misc]
    assert out[1] == 126 and len(out) == 4 + 128


def test_partial_frames_need_more() -> None:
    data = frame(OPEN)
    for cut in range(len(data)):
        assert rewrite_open_frame(data[:cut], mint) is None


def test_leading_control_frames_pass_through() -> None:
    ping = frame(b"hi", 0x9)
    out, rest = rewrite_open_frame(ping + frame(OPEN) + frame(b"40"), mint)  # type: ignore[misc]
    assert out.startswith(ping)
    assert handshake_of(unframe(out[len(ping) :])[1])["sid"] == "AbCdEfGhIjKlMnOpQrSt.TAG"
    assert rest == frame(b"40")


def test_close_before_open_passes_everything() -> None:
    close = frame(b"\x03\xe8", 0x8)
    assert rewrite_open_frame(close + b"junk", mint) == (close, b"junk")


@pytest.mark.parametrize(
    "data",
    [
        bytes((0x81, 0x80 | 5)) + b"MASK" + b"01234",  # masked server frame
        bytes((0xC1, 5)) + b"abcde",  # RSV1: permessage-deflate
        frame(OPEN, 0x2),  # binary
        frame(OPEN, fin=False),  # fragmented
        frame(b"4hello"),  # a message, not an open packet
        bytes((0x81, 127)) + (1 << 63).to_bytes(8, "big"),
    ],
)
def test_frames_that_cannot_be_rewritten_are_errors(data: bytes) -> None:
    with pytest.raises(OpenPacketError):
        rewrite_open_frame(data, mint)


def test_rewriter_fed_byte_by_byte_then_passes_through() -> None:
    rewriter = OpenFrameRewriter(mint)
    stream = frame(OPEN) + frame(b"40") + frame(b'42["whoami"]')
    out = b"".join(rewriter.feed(stream[i : i + 1]) for i in range(len(stream)))
    assert rewriter.done
    opcode, payload, rest = unframe(out)
    assert opcode == 0x1
    assert handshake_of(payload)["sid"] == "AbCdEfGhIjKlMnOpQrSt.TAG"
    assert rest == frame(b"40") + frame(b'42["whoami"]')
    assert rewriter.feed(b"later") == b"later"


def test_rewriter_gives_up_on_endless_garbage() -> None:
    rewriter = OpenFrameRewriter(mint)
    rewriter.feed(bytes((0x81, 127)) + (1 << 40).to_bytes(8, "big"))
    with pytest.raises(OpenPacketError):
        rewriter.feed(b"x" * (1 << 20))
