"""Which build of the per-exchange protocol code runs: compiled or the pure-Python reference.

``limpet.proxy.http1`` (Downstream and Exchange: from a parsed head to the upstream write and
back) and ``limpet.proxy.upstream`` (UpstreamConnection, UpstreamPool) are the reference;
``limpet.proxy._chttp1`` and ``_cupstream`` are the very same files compiled by Cython
(setup.py), as the wire core's ``_c*`` twins are. The switch is the wire core's, one for all
(limpet.proxy.wire decides, with every compiled module checked against the sources it was
built from): ``LIMPET_NO_EXTENSIONS=1`` selects pure Python, and so does a compiled twin that
was not built or is stale. ``CORE`` says which ("compiled" or "python"), ``WHY`` why; the proxy
logs both at start. The wire core and this code are never of different builds.
"""

from __future__ import annotations

from types import ModuleType

from limpet.proxy import http1 as python_http1
from limpet.proxy import upstream as python_upstream
from limpet.proxy import wire


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
    if wire.CORE != "compiled":  # (LIMPET_NO_EXTENSIONS, or a twin not built or stale)
        return python_http1, python_upstream, "python", wire.WHY
    # the wire core checked these are built and fresh: failing to import them now is a bug
    # to see, not a reason to run a compiled core with Python protocol code
    from limpet.proxy import _chttp1, _cupstream  # type: ignore[attr-defined]

    why = "built by Cython from limpet/proxy/{http1,upstream}.py, stamped with their sources"
    return _chttp1, _cupstream, "compiled", why


http1, upstream, CORE, WHY = _select()

#: the selected build's classes: the listener's protocol, and a backend's connection pool
Downstream: type[python_http1.Downstream] = http1.Downstream
UpstreamPool: type[python_upstream.UpstreamPool] = upstream.UpstreamPool
