"""What a message's ``data`` may be: JSON of bounded nesting and size, finite numbers only.

The hub's own rule (``--max-depth``, ``--max-payload``), the same on every Python version:

- at publish, on the value (``check_shape``, ``encode_checked``): nothing downstream (the
  broker, the encoder, every replica's fan-out, every client's JSON parser) meets a value it
  cannot carry;
- on JSON text, *before* any parser sees it (``nesting_within``, ``readable``): a record read
  from the broker (live or history) and a socket.io packet a client sent. How deep a parser goes
  before it gives up is the interpreter's business and changed in Python 3.13 (a record 5 000
  deep raised RecursionError on 3.11 and 3.12 and decoded on 3.13, so a 3.13 replica delivered
  what a 3.12 replica announced as unreadable); the hub no longer leans on it.

Both walks are iterative, and ``MAX_DEPTH_LIMIT`` keeps every value the parsers and encoders are
given far below the depth at which any supported version's recursion guard trips.
"""

from __future__ import annotations

import math
import re
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


#: a JSON string (escapes included): brackets inside it are not nesting
_STRING_B = re.compile(rb'"(?:[^"\\]|\\.)*"', re.S)
_STRING_S = re.compile(r'"(?:[^"\\]|\\.)*"', re.S)
_OTHER_B = re.compile(rb"[^\[\]{}]+")
_OTHER_S = re.compile(r"[^\[\]{}]+")
#: an innermost empty list or object (once strings and scalars are gone)
_PAIR_B = re.compile(rb"\[\]|\{\}")
_PAIR_S = re.compile(r"\[\]|\{\}")


def nesting_within(text: bytes | str, max_depth: int) -> bool:
    """Whether the JSON ``text`` nests lists/objects at most ``max_depth`` deep (``[[1]]`` is
    2, a scalar 0), decided on the text without parsing it, so the answer does not depend on
    any parser's recursion guard.

    Text with no more brackets than ``max_depth`` passes at once (most messages: two C-speed
    counts). Otherwise strings and scalars are removed and each pass removes the innermost
    ``[]``/``{}`` pairs: text ``d`` deep is empty after ``d`` passes. At most ``max_depth``
    passes, each over what is left, so the cost is bounded by ``max_depth`` times the size.
    Malformed text (unbalanced brackets) passes when its brackets could not nest deeper than
    ``max_depth`` anyway, so the parser names its actual fault."""
    if isinstance(text, str):
        if text.count("[") + text.count("{") <= max_depth:
            return True
        left: bytes | str = _OTHER_S.sub("", _STRING_S.sub("", text))
        pair: re.Pattern[Any] = _PAIR_S
    else:
        if text.count(b"[") + text.count(b"{") <= max_depth:
            return True
        left = _OTHER_B.sub(b"", _STRING_B.sub(b"", text))
        pair = _PAIR_B
    for _ in range(max_depth):
        if not left:
            return True
        peeled = pair.sub(left[:0], left)
        if len(peeled) == len(left):  # unbalanced: not JSON
            return len(left) <= max_depth
        left = peeled
    return not left


def readable(raw: bytes | str, *, max_depth: int, max_bytes: int) -> bool:
    """Whether a stored or relayed message's data (JSON text) is within the hub's limits: at
    most ``max_bytes`` long and ``max_depth`` deep. What is not is never parsed."""
    return len(raw) <= max_bytes and nesting_within(raw, max_depth)


def check_offset(value: object) -> int:
    """An offset a client sent: an integer in 0..MAX_OFFSET (bool is not an integer here)."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_OFFSET:
        raise ChannelError(f"offset must be an integer in 0..{MAX_OFFSET}")
    return value
