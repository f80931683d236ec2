"""SANS-IO: the proxy's wire core (HTTP/1.1 bytes in, decisions and bytes out).

Two builds of one source: ``parser`` is the pure-Python reference, ``_cparser`` the same module
compiled by Cython (see setup.py). ``RequestParser`` here is the compiled one when it was built
and ``LIMPET_NO_EXTENSIONS`` is not set, else the reference; ``CORE`` says which ("compiled" or
"python") and the proxy logs it at start.
"""

from __future__ import annotations

import os
from types import ModuleType

from limpet.proxy.wire import parser as python_core


def _select() -> tuple[ModuleType, str, str]:
    if os.environ.get("LIMPET_NO_EXTENSIONS"):
        return python_core, "python", "LIMPET_NO_EXTENSIONS is set"
    try:
        from limpet.proxy.wire import _cparser  # type: ignore[attr-defined]
    except ImportError as exc:
        return python_core, "python", f"the compiled core is not built ({exc})"
    return _cparser, "compiled", "built by Cython from limpet/proxy/wire/parser.py"


core, CORE, WHY = _select()

#: the selected core's parser and head classes (the event and framing constants are the same
#: plain ints in both builds)
RequestParser: type[python_core.RequestParser] = core.RequestParser
RequestHead: type[python_core.RequestHead] = core.RequestHead


def compiled_core() -> ModuleType | None:
    """The compiled build, whatever LIMPET_NO_EXTENSIONS says (for the differential tests)."""
    try:
        from limpet.proxy.wire import _cparser  # type: ignore[attr-defined]
    except ImportError:
        return None
    return _cparser  # type: ignore[no-any-return]
