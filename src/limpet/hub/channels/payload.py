"""What a message's ``data`` may be: JSON of bounded nesting and size, finite numbers only.

Checked once, at publish, so nothing downstream (the broker, python-socketio's encoder, every
replica's fan-out, every client's JSON parser) meets a value it cannot carry. The walk is
iterative: a value nested deeper than Python's recursion limit is refused with a clear error
instead of raising RecursionError wherever it is encoded next.
"""

from __future__ import annotations

import math
from typing import Any

import msgspec

from limpet.errors import ChannelError

#: default deepest nesting of lists/objects in ``data`` (a top-level scalar is depth 0)
MAX_DEPTH = 32
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


def check_offset(value: object) -> int:
    """An offset a client sent: an integer in 0..MAX_OFFSET (bool is not an integer here)."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_OFFSET:
        raise ChannelError(f"offset must be an integer in 0..{MAX_OFFSET}")
    return value
