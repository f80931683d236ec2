"""Namespaces: channel-name prefixes with their own rules (``--config``, docs/hub.md).

A channel belongs to the namespace with the longest prefix it starts with, else to the default
namespace (prefix ``""``), whose rules are the command line's. Plain values; the YAML reader is
``limpet.hub.config``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from limpet.hub.channels import HistoryPolicy, HistoryRules
from limpet.hub.limits import ClientLimits


@dataclass(frozen=True)
class HookRules:
    """Which hooks a namespace's channels call, and where."""

    #: the application's hook base URL (None: this namespace calls no subscribe/publish hook)
    url: str | None = None
    subscribe: bool = True
    publish: bool = True
    #: on a hook outage, allow (True) instead of refusing (False, the default)
    fail_open: bool = False


@dataclass(frozen=True)
class Namespace:
    prefix: str = ""
    history: HistoryPolicy = field(default_factory=HistoryPolicy)
    #: presence of subscribers kept (and readable) at all
    presence: bool = True
    #: join/leave events sent to subscribers that ask for them
    join_leave: bool = True
    #: clients may publish over socket.io (the HTTP API always may)
    publish: bool = True
    #: clients without an identity (no JWT, no user from the connect hook) may subscribe, and
    #: HTTP reads need no token
    anonymous_read: bool = True
    #: subscribers of one channel, over all replicas (0: no limit)
    max_subscribers: int = 0
    limits: ClientLimits = field(default_factory=ClientLimits)
    hooks: HookRules = field(default_factory=HookRules)

    def __post_init__(self) -> None:
        if self.max_subscribers < 0:
            raise ValueError("max-subscribers must be >= 0 (0: no limit)")

    def __repr__(self) -> str:
        return f"Namespace(prefix={self.prefix!r}, publish={self.publish}, history={self.history})"


@dataclass(frozen=True)
class Namespaces:
    default: Namespace = field(default_factory=Namespace)
    by_prefix: tuple[Namespace, ...] = ()

    def for_channel(self, channel: str) -> Namespace:
        best = self.default
        for ns in self.by_prefix:
            if channel.startswith(ns.prefix) and len(ns.prefix) > len(best.prefix):
                best = ns
        return best

    def history_rules(self, extra: tuple[tuple[str, HistoryPolicy], ...] = ()) -> HistoryRules:
        """The brokers' history rules: ``--history-rule`` ones, then each namespace's."""
        return HistoryRules(
            self.default.history, extra + tuple((ns.prefix, ns.history) for ns in self.by_prefix)
        )
