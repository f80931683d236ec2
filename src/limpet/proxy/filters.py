"""I/O: exchange filters, the fixed hooks through which optional behaviour plugs into an exchange.

An ``Exchange`` calls its filter at four points (as HAProxy's filters are called): the request
head it is about to send upstream, the response head, each piece of response body, and the end
of the response (and, after ``101``, the tunnel it becomes). The base class does nothing, and
``NO_FILTER`` is what an exchange without an optional feature holds, so the exchange has no
``if feature:`` branches: Engine.IO sid rewriting (limpet.proxy.engineio) is one such filter.
"""

from __future__ import annotations

from typing import Any


class ExchangeFilter:
    """The hooks; each default leaves the exchange as it is."""

    __slots__ = ()

    def request_head(self, url: bytes, drop: frozenset[bytes]) -> tuple[bytes, frozenset[bytes]]:
        """The target to send upstream and the request fields not to forward."""
        return url, drop

    def response_head(
        self, exchange: Any, status: int, reason: bytes, headers: list[tuple[bytes, bytes]]
    ) -> bool:
        """True: the filter holds the response head (it writes it at ``end``)."""
        return False

    def body(self, data: bytes) -> bool:
        """True: the filter took this piece of response body."""
        return False

    def end(self, exchange: Any) -> None:
        """The response ended (before its last chunk is written downstream)."""

    def tunnel(self, conn: Any) -> None:
        """The exchange became a tunnel on upstream connection ``conn``."""


#: the filter of every exchange that has none
NO_FILTER = ExchangeFilter()
