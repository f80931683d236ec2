"""The one object the hub consults at connect, subscribe and publish: namespaces' rules, the
per-client limits, and the application's hooks.

``Hub`` calls it at four fixed points (connect, subscribe, publish, rpc) and knows nothing of
what it decides; with no hooks and no config it applies the default namespace and limits only.
The decisions it combines are sans-IO (``namespaces``, ``limits``, ``hooks.*``); the HTTP calls
are ``caller.HookCaller``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from http.cookies import CookieError, SimpleCookie
from typing import Any, TypeVar

from limpet.errors import ChannelError
from limpet.hub.access import AuthError
from limpet.hub.caller import HookCaller
from limpet.hub.hooks.answers import (
    Allow,
    Answer,
    BadResult,
    Deny,
    SubscribeGrant,
    identity,
    publish_change,
    subscribe_grant,
)
from limpet.hub.hooks.cache import GrantCache
from limpet.hub.limits import ClientBudget
from limpet.hub.namespaces import Namespace, Namespaces

R = TypeVar("R")

#: request headers passed to the connect hook by default (``--hook-header`` replaces the list)
DEFAULT_HEADERS = ("cookie", "authorization", "user-agent", "origin", "x-forwarded-for")
#: the most bytes of forwarded headers (a client cannot make every hook call huge)
MAX_FORWARDED = 16 << 10


class Refused(AuthError):
    """A hook's deny, or an outage failing closed: an error ack with a code."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


@dataclass(slots=True)
class ClientState:
    """What the policy keeps per connected client (it lives on the hub's Client)."""

    sid: str
    user: str
    #: no identity from a JWT or the connect hook
    anonymous: bool
    info: dict[str, Any] = field(default_factory=dict)
    #: the handshake's forwarded headers and cookies, passed to every hook of this client
    request: dict[str, Any] = field(default_factory=dict)
    grants: GrantCache[SubscribeGrant] = field(default_factory=GrantCache)
    #: channel -> the info its subscribe hook gave (shown in presence)
    channel_info: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: namespace prefix -> this client's rate buckets in it
    budgets: dict[str, ClientBudget] = field(default_factory=dict)

    def __repr__(self) -> str:
        return f"ClientState(sid={self.sid!r}, user={self.user!r}, anonymous={self.anonymous})"


class Policy:
    def __init__(
        self,
        namespaces: Namespaces | None = None,
        *,
        connect: HookCaller | None = None,
        connect_fail_open: bool = False,
        callers: Mapping[str, HookCaller] | None = None,
        forward_headers: Collection[str] = DEFAULT_HEADERS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.namespaces = namespaces or Namespaces()
        self.connect_hook = connect
        self.connect_fail_open = connect_fail_open
        #: hook URL -> its caller (namespaces sharing an application share its bounds)
        self.callers = dict(callers or {})
        self.forward_headers = tuple(h.lower() for h in forward_headers)
        self.clock = clock

    def __repr__(self) -> str:
        return f"Policy(namespaces={len(self.namespaces.by_prefix)}, hooks={sorted(self.callers)})"

    def stats(self) -> dict[str, Any]:
        """For /healthz: each application's answers by kind and its breaker's state."""
        if not self.callers:
            return {}
        return {
            "hooks": {
                url: {**caller.counts, "breaker": caller.breaker.state.value}
                for url, caller in self.callers.items()
            }
        }

    def namespace(self, channel: str) -> Namespace:
        return self.namespaces.for_channel(channel)

    async def close(self) -> None:
        for caller in {id(c): c for c in [*self.callers.values(), self.connect_hook] if c}.values():
            await caller.close()

    # --- connect --------------------------------------------------------------------------

    async def connect(
        self, sid: str, environ: Mapping[str, Any], auth: Any, user: str | None
    ) -> ClientState:
        """The client's state; ``user`` is a JWT's subject (or None). Raises Refused."""
        request = forwarded(environ, self.forward_headers)
        state = ClientState(sid, user or sid, user is None, request=request)
        if self.connect_hook is None:
            return state
        payload: dict[str, Any] = {"client": sid, **request}
        if user is not None:
            payload["user"] = user
        if isinstance(auth, dict):
            payload["auth"] = auth
        answer = await self.connect_hook.call("connect", payload)
        found = self._result(answer, identity, self.connect_fail_open, "connect")
        if found is None:  # an outage, failing open: as without the hook
            return state
        if found.user is not None:
            state.user, state.anonymous = found.user, False
        state.info = found.info
        return state

    # --- subscribe ------------------------------------------------------------------------

    def admit_subscribe(self, state: ClientState, channel: str, subs: Collection[str]) -> Namespace:
        """The limits and rules checked before anything is asked or held (error acks)."""
        ns = self.namespace(channel)
        if state.anonymous and not ns.anonymous_read:
            raise AuthError(f"channels of {_label(ns)} need an identity (anonymous reads are off)")
        limit = ns.limits.channels_per_client
        if limit and channel not in subs:
            mine = sum(1 for c in subs if self.namespace(c) is ns)
            if mine >= limit:
                raise ChannelError(
                    f"channel limit reached: {limit} channels per client in {_label(ns)}"
                )
        if not self._budget(state, ns).subscribes.take(self.clock()):
            raise ChannelError(
                f"too many subscribes: {ns.limits.subscribes_per_second:g}/s per client"
            )
        return ns

    async def authorize_subscribe(
        self, state: ClientState, channel: str, ns: Namespace
    ) -> SubscribeGrant:
        caller = self._caller(ns, ns.hooks.subscribe)
        if caller is None:
            return SubscribeGrant()
        cached = state.grants.get(channel)
        if cached is not None:
            return cached
        answer = await caller.call("subscribe", self._payload(state, channel))
        grant = self._result(answer, subscribe_grant, ns.hooks.fail_open, "subscribe")
        if grant is None:
            return SubscribeGrant(cache=False)
        if grant.cache:
            state.grants.put(channel, grant)
        return grant

    # --- publish --------------------------------------------------------------------------

    def admit_publish(self, state: ClientState, channel: str) -> Namespace:
        ns = self.namespace(channel)
        if not ns.publish:
            raise AuthError(f"clients may not publish to {_label(ns)}")
        if not self._budget(state, ns).publishes.take(self.clock()):
            raise ChannelError(
                f"too many publishes: {ns.limits.publishes_per_second:g}/s per client"
            )
        return ns

    def publish_hook(self, ns: Namespace) -> HookCaller | None:
        """The caller a publish to ``ns`` must go through first (None: publish as sent)."""
        return self._caller(ns, ns.hooks.publish)

    async def change_publish(
        self, caller: HookCaller, state: ClientState, channel: str, data: Any, ns: Namespace
    ) -> Any:
        """The data to publish: as sent, or as the application replaced it. Raises Refused."""
        payload = self._payload(state, channel)
        payload["data"] = data
        answer = await caller.call("publish", payload)
        change = self._result(answer, publish_change, ns.hooks.fail_open, "publish")
        return change.data if change is not None and change.replaced else data

    # --- rpc ------------------------------------------------------------------------------

    async def rpc(self, state: ClientState, method: str, data: Any) -> Any:
        """An ``rpc`` event, answered by the application's ``URL/rpc`` (never fails open)."""
        caller = self.connect_hook
        if caller is None:
            raise ChannelError("rpc is not enabled (no --hook-url)")
        payload = self._payload(state, None)
        payload.update(method=method, data=data)
        answer = await caller.call("rpc", payload)
        return self._result(answer, lambda r: r.get("data"), False, "rpc")

    # --- shared ---------------------------------------------------------------------------

    def _caller(self, ns: Namespace, enabled: bool) -> HookCaller | None:
        if not enabled or ns.hooks.url is None:
            return None
        return self.callers.get(ns.hooks.url)

    def _budget(self, state: ClientState, ns: Namespace) -> ClientBudget:
        budget = state.budgets.get(ns.prefix)
        if budget is None:
            budget = state.budgets[ns.prefix] = ClientBudget(ns.limits, self.clock())
        return budget

    def _payload(self, state: ClientState, channel: str | None) -> dict[str, Any]:
        payload: dict[str, Any] = {"client": state.sid, "user": state.user, **state.request}
        if channel is not None:
            payload["channel"] = channel
        return payload

    @staticmethod
    def _result(
        answer: Answer, read: Callable[[dict[str, Any]], R], fail_open: bool, hook: str
    ) -> R | None:
        """The read result of an Allow; Refused for a Deny, and for an outage failing closed;
        None for an outage failing open."""
        if isinstance(answer, Deny):
            raise Refused(answer.message, answer.code)
        if isinstance(answer, Allow):
            try:
                return read(answer.result)
            except BadResult as exc:
                reason = str(exc)
        else:
            reason = answer.reason
        if fail_open:
            return None
        raise Refused(f"{hook} hook unavailable: {reason}", 503)


def forwarded(environ: Mapping[str, Any], names: Collection[str]) -> dict[str, Any]:
    """The handshake's headers named in ``names`` and its cookies, bounded in size."""
    headers: dict[str, str] = {}
    size = 0
    for name in names:
        value = environ.get("HTTP_" + name.upper().replace("-", "_"))
        if isinstance(value, str) and size + len(value) <= MAX_FORWARDED:
            headers[name] = value
            size += len(value)
    cookies: dict[str, str] = {}
    if "cookie" in headers:
        try:
            jar: SimpleCookie = SimpleCookie(headers["cookie"])
        except CookieError:
            jar = SimpleCookie()
        cookies = {k: m.value for k, m in jar.items()}
    return {"headers": headers, "cookies": cookies}


def _label(ns: Namespace) -> str:
    return f"namespace {ns.prefix!r}" if ns.prefix else "the default namespace"
