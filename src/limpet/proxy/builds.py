"""Which build of the per-exchange protocol code runs: compiled or the pure-Python reference.

``limpet.proxy.http1`` (Downstream and Exchange: from a parsed head to the upstream write and
back) and ``limpet.proxy.upstream`` (UpstreamConnection, UpstreamPool) are the reference;
``limpet.proxy._chttp1`` and ``_cupstream`` are the very same files compiled by Cython
(setup.py), as the wire core's ``_c*`` twins are. The switch is the wire core's, one for all:
``LIMPET_NO_EXTENSIONS=1`` selects pure Python, and so does a compiled twin that was not built.
``CORE`` says which ("compiled" or "python"), ``WHY`` why; the proxy logs both at start.
"""

from __future__ import annotations

import os
from types import ModuleType

from limpet.proxy import http1 as python_http1
from limpet.proxy import upstream as python_upstream


def compiled_http1() -> ModuleType | None:
    """The compiled Downstream/Exchange, whatever LIMPET_NO_EXTENSIONS says (for the tests)."""
    try:
        from limpet.proxy import _chttp1  # type: ignore[attr-defined]
    except ImportError:
        return None
    return _chttp1  # type: ignore[no-any-return]


def compiled_upstream() -> ModuleType | None:
    """The compiled upstream side, whatever LIMPET_NO_EXTENSIONS says (for the tests)."""
    try:
        from limpet.proxy import _cupstream  # type: ignore[attr-defined]
    except ImportError:
        return None
    return _cupstream  # type: ignore[no-any-return]


def _select() -> tuple[ModuleType, ModuleType, str, str]:
    if os.environ.get("LIMPET_NO_EXTENSIONS"):
        return python_http1, python_upstream, "python", "LIMPET_NO_EXTENSIONS is set"
    http1, upstream = compiled_http1(), compiled_upstream()
    if http1 is None or upstream is None:
        return python_http1, python_upstream, "python", "the compiled protocol code is not built"
    return http1, upstream, "compiled", "built by Cython from limpet/proxy/{http1,upstream}.py"


http1, upstream, CORE, WHY = _select()

#: the selected build's classes: the listener's protocol, and a backend's connection pool
Downstream: type[python_http1.Downstream] = http1.Downstream
UpstreamPool: type[python_upstream.UpstreamPool] = upstream.UpstreamPool
