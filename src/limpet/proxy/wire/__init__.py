"""SANS-IO: the proxy's wire core (HTTP/1.1 bytes in, decisions and bytes out).

Two builds of one source: ``parser`` (requests), ``response`` (responses) and ``rewrite`` (heads)
are the pure-Python reference, ``_cparser``, ``_cresponse`` and ``_crewrite`` the same modules
compiled by Cython (see setup.py). ``RequestParser`` here is the compiled one when it was built
and ``LIMPET_NO_EXTENSIONS`` is not set, else the reference; ``CORE`` says which ("compiled" or
"python") and the proxy logs it at start.

The choice is made here once for every compiled twin, the protocol code's too
(limpet.proxy.builds follows ``CORE``): only when each one is built and stamped with the
sources beside it (limpet.proxy.wire.stamps) does the compiled build run, so a stale module is
never loaded and a compiled core never runs beside Python protocol code, or the reverse.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from types import ModuleType

from limpet.proxy.wire import parser as python_core
from limpet.proxy.wire import response as python_response
from limpet.proxy.wire import rewrite as python_rewrite
from limpet.proxy.wire import stamps


def _select() -> tuple[ModuleType, ModuleType, ModuleType, str, str]:
    if os.environ.get("LIMPET_NO_EXTENSIONS"):
        return python_core, python_rewrite, python_response, "python", "LIMPET_NO_EXTENSIONS is set"
    refused = stamps.check()  # (raises StaleBuild instead under LIMPET_STRICT_BUILD)
    if refused is not None:
        why = f"the compiled build is refused: {refused}"
        return python_core, python_rewrite, python_response, "python", why
    try:
        from limpet.proxy.wire import (  # type: ignore[attr-defined]
            _cparser,
            _cresponse,
            _crewrite,
        )
    except ImportError as exc:
        return (
            python_core,
            python_rewrite,
            python_response,
            "python",
            f"the compiled core is not built ({exc})",
        )
    return (
        _cparser,
        _crewrite,
        _cresponse,
        "compiled",
        "built by Cython from limpet/proxy/wire/*.py, stamped with the sources beside it",
    )


core, rewrite_core, response_core, CORE, WHY = _select()

#: the selected core's parser and head classes (the event and framing constants are the same
#: plain ints in both builds)
RequestParser: type[python_core.RequestParser] = core.RequestParser
RequestHead: type[python_core.RequestHead] = core.RequestHead
ResponseParser: type[python_response.ResponseParser] = response_core.ResponseParser
ResponseHead: type[python_response.ResponseHead] = response_core.ResponseHead
hop_by_hop: Callable[[list[tuple[bytes, bytes]], list[bytes]], frozenset[bytes]] = (
    rewrite_core.hop_by_hop
)
request_head: Callable[..., bytes] = rewrite_core.request_head
response_head: Callable[..., tuple[bytes, bool, bool, bool]] = rewrite_core.response_head


def compiled_response() -> ModuleType | None:
    """The compiled response parser, whatever LIMPET_NO_EXTENSIONS says (for the tests)."""
    try:
        from limpet.proxy.wire import _cresponse  # type: ignore[attr-defined]
    except ImportError:
        return None
    return _cresponse  # type: ignore[no-any-return]


def compiled_rewrite() -> ModuleType | None:
    """The compiled head rewriting, whatever LIMPET_NO_EXTENSIONS says (for the tests)."""
    try:
        from limpet.proxy.wire import _crewrite  # type: ignore[attr-defined]
    except ImportError:
        return None
    return _crewrite  # type: ignore[no-any-return]


def compiled_core() -> ModuleType | None:
    """The compiled build, whatever LIMPET_NO_EXTENSIONS says (for the differential tests)."""
    try:
        from limpet.proxy.wire import _cparser  # type: ignore[attr-defined]
    except ImportError:
        return None
    return _cparser  # type: ignore[no-any-return]
