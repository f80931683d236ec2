"""What a message's ``data`` may be: JSON of bounded nesting and size, finite numbers only.

The hub's own rule (``--max-depth``, ``--max-payload``), the same on every Python version:

- at publish, on the value (``check_shape``, ``encode_checked``): nothing downstream (the
  broker, the encoder, every replica's fan-out, every client's JSON parser) meets a value it
  cannot carry;
- on what it parses (a record read from the broker, live or history, a client's socket.io
  packet or HTTP body): ``decoded_within`` after the parse, with the parser's RecursionError
  counted as too deep. How deep a parser goes is the interpreter's business and changed in
  Python 3.13 (a record 5 000 deep raised RecursionError on 3.11 and 3.12 and decoded on 3.13,
  so a 3.13 replica delivered what a 3.12 replica announced as unreadable); the hub's answer no
  longer depends on it.

Both walks are iterative, and ``MAX_DEPTH_LIMIT`` keeps every value within the limit far below
the depth at which any supported version's parsers and encoders give up.
"""

from __future__ import annotations

import math
from typing import Any

import msgspec

from limpet.errors import ChannelError

#: default deepest nesting of lists/objects in ``data`` (a top-level scalar is depth 0)
MAX_DEPTH = 32
#: the largest ``--max-depth``: msgspec, the json module and python-socketio handle 1 000 levels on
#: 3.11, 3.12 and 3.13 (the first to refuse more is 3.11/3.12 at ~1 000-1 500), so a packet of
#: this depth plus its envelope is parsed and encoded the same way on each
MAX_DEPTH_LIMIT = 256
#: largest offset a client may name: JavaScript clients lose integers above 2**53 - 1
MAX_OFFSET = 2**53 - 1

_encoder = msgspec.json.Encoder()
#: a tuple, not ``dict | list | tuple``: isinstance against a union is several times slower
_CONTAINERS = (dict, list, tuple)


def check_shape(data: Any, *, max_depth: int) -> None:
    """Raise ChannelError when ``data`` nests deeper than ``max_depth`` or holds a non-finite
    number (NaN and Infinity are not JSON: stored they would come back as null).

    Walked one nesting level at a time, looking only at containers and floats: it runs for
    every publish, and a per-value generator and tuple were ~4% of a replica in the 100-channel
    profile (docs/benchmarks-hub.md)."""
    if isinstance(data, float):
        _finite(data)
        return
    level: list[Any] = [data] if isinstance(data, _CONTAINERS) else []
    depth = 0
    while level:
        if depth >= max_depth:
            raise ChannelError(f"data nested deeper than {max_depth} levels")
        deeper: list[Any] = []
        for value in level:
            for child in value.values() if isinstance(value, dict) else value:
                if isinstance(child, _CONTAINERS):
                    deeper.append(child)
                elif isinstance(child, float):
                    _finite(child)
        level = deeper
        depth += 1


def _finite(value: float) -> None:
    if not math.isfinite(value):
        raise ChannelError(f"data holds {value!r}: NaN and Infinity are not JSON")


def encode_checked(data: Any, *, max_depth: int, max_bytes: int) -> bytes:
    """``data`` as JSON once it passed ``check_shape`` and fits ``max_bytes``; ChannelError
    (naming the limit) otherwise."""
    check_shape(data, max_depth=max_depth)
    try:
        raw = _encoder.encode(data)
    except (TypeError, msgspec.EncodeError) as exc:
        raise ChannelError(f"data is not JSON: {exc}") from None
    if len(raw) > max_bytes:
        raise ChannelError(f"payload too large: {len(raw)} bytes > {max_bytes} allowed")
    return raw


def brackets(text: bytes | str) -> int:
    """How many lists and objects JSON ``text`` opens at most (brackets inside strings count
    too): no deeper than this, whatever its shape. Two C-speed counts."""
    if isinstance(text, str):
        return text.count("[") + text.count("{")
    return text.count(b"[") + text.count(b"{")


def deeper_than(value: Any, max_depth: int) -> bool:
    """Whether a decoded JSON value nests lists/objects deeper than ``max_depth`` (``[[1]]`` is
    2, a scalar 0). Walked one level at a time, as check_shape is, never recursively."""
    level: list[Any] = [value] if isinstance(value, _CONTAINERS) else []
    depth = 0
    while level:
        if depth >= max_depth:
            return True
        deeper: list[Any] = []
        for item in level:
            for child in item.values() if isinstance(item, dict) else item:
                if isinstance(child, _CONTAINERS):
                    deeper.append(child)
        level = deeper
        depth += 1
    return False


def decoded_within(text: bytes | str, value: Any, max_depth: int) -> bool:
    """Whether ``value``, decoded from ``text``, is within ``max_depth`` (most text has too few
    brackets to need the walk).

    This is how the hub applies ``--max-depth`` to what it parses (a record from the broker, a
    client's packet or HTTP body), with ``RecursionError`` from the parser counted as too deep:
    a parser gives up only far past MAX_DEPTH_LIMIT, so text it refuses is past the limit too.
    Where a parser gives up is the interpreter's business (a record 5 000 deep raised
    RecursionError on 3.11 and 3.12 and decoded on 3.13); the answer, refused, is the same on
    each. (Measuring the text itself before parsing was tried: stripping its strings with a
    regular expression cost more than msgspec's whole decode.)"""
    return brackets(text) <= max_depth or not deeper_than(value, max_depth)


def check_offset(value: object) -> int:
    """An offset a client sent: an integer in 0..MAX_OFFSET (bool is not an integer here)."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_OFFSET:
        raise ChannelError(f"offset must be an integer in 0..{MAX_OFFSET}")
    return value
