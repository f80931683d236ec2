"""The policy's hook decisions, driven by answers given directly (the HTTP edge is tested with
a real application process in tests/integration/hub/test_hooks.py)."""

from __future__ import annotations

from typing import Any

import pytest

from limpet.hub.hooks.answers import Allow, Answer, Deny, Outage
from limpet.hub.namespaces import HookRules, Namespace, Namespaces
from limpet.hub.policy import ClientState, Policy, Refused

URL = "http://app/hooks"


class Answers:
    """Stands where a HookCaller stands: the next answer for each hook, and the calls made."""

    def __init__(self, **answers: Answer) -> None:
        self.answers = answers
        self.calls: list[tuple[str, dict[str, Any]]] = []

    async def call(self, hook: str, payload: dict[str, Any]) -> Answer:
        self.calls.append((hook, payload))
        return self.answers[hook]

    async def close(self) -> None:
        pass


def policy(app: Answers, *, fail_open: bool = False) -> Policy:
    default = Namespace(hooks=HookRules(url=URL, fail_open=fail_open))
    spaces = Namespaces(default, (Namespace("open:", hooks=HookRules(url=None)),))
    return Policy(spaces, connect=app, connect_fail_open=fail_open, callers={URL: app})  # type: ignore[arg-type]


async def test_connect_takes_the_user_and_forwards_cookies() -> None:
    app = Answers(connect=Allow({"user": "ann", "info": {"n": 1}}))
    state = await policy(app).connect("sid", {"HTTP_COOKIE": "s=1"}, {"k": "v"}, None)
    assert (state.user, state.anonymous, state.info) == ("ann", False, {"n": 1})
    assert app.calls == [("connect", {"client": "sid", "headers": {"cookie": "s=1"},
                                      "cookies": {"s": "1"}, "auth": {"k": "v"}})]  # fmt: skip


@pytest.mark.parametrize(
    ("answer", "fail_open", "outcome"),
    [
        (Deny(4401, "no"), False, ("refused", 4401, "no")),
        (Deny(4401, "no"), True, ("refused", 4401, "no")),  # a deny is never an outage
        (Outage("HTTP 500"), False, ("refused", 503, "connect hook unavailable: HTTP 500")),
        (Outage("HTTP 500"), True, ("anonymous",)),
        (Allow({"user": 5}), False, ("refused", 503, "connect hook unavailable: connect: user")),
        (Allow({"user": 5}), True, ("anonymous",)),
    ],
)
async def test_connect_outcomes(answer: Answer, fail_open: bool, outcome: tuple[Any, ...]) -> None:
    p = policy(Answers(connect=answer), fail_open=fail_open)
    try:
        state = await p.connect("sid", {}, None, None)
    except Refused as exc:
        assert outcome[0] == "refused" and exc.code == outcome[1]
        assert str(exc).startswith(outcome[2])
    else:
        assert outcome == ("anonymous",) and state.anonymous and state.user == "sid"


async def test_subscribe_grants_are_cached_unless_told_not_to() -> None:
    app = Answers(subscribe=Allow({"info": {"role": "mod"}}))
    p, state = policy(app), ClientState("sid", "ann", False)
    ns = p.namespace("a")
    for _ in range(3):
        assert (await p.authorize_subscribe(state, "a", ns)).info == {"role": "mod"}
    assert len(app.calls) == 1
    app.answers["subscribe"] = Allow({"cache": False})
    for _ in range(2):
        await p.authorize_subscribe(state, "b", ns)
    assert len(app.calls) == 3


async def test_an_outage_failing_open_is_not_cached() -> None:
    app = Answers(subscribe=Outage("down"))
    p, state = policy(app, fail_open=True), ClientState("sid", "ann", False)
    for _ in range(2):
        await p.authorize_subscribe(state, "a", p.namespace("a"))
    assert len(app.calls) == 2  # asked again: the next answer may be a deny


async def test_a_namespace_without_hooks_asks_nobody() -> None:
    app = Answers()
    p = policy(app)
    ns = p.namespace("open:x")
    await p.authorize_subscribe(ClientState("sid", "ann", False), "open:x", ns)
    assert p.publish_hook(ns) is None and app.calls == []


async def test_publish_data_replaced_kept_or_refused() -> None:
    app = Answers(publish=Allow({"data": {"x": 2}}))
    p, state = policy(app), ClientState("sid", "ann", False)
    ns = p.namespace("a")
    caller = p.publish_hook(ns)
    assert caller is app
    assert await p.change_publish(caller, state, "a", {"x": 1}, ns) == {"x": 2}
    app.answers["publish"] = Allow({})
    assert await p.change_publish(caller, state, "a", {"x": 1}, ns) == {"x": 1}
    app.answers["publish"] = Deny(4000, "spam")
    with pytest.raises(Refused, match="spam"):
        await p.change_publish(caller, state, "a", {"x": 1}, ns)


async def test_rpc_never_fails_open() -> None:
    p = policy(Answers(rpc=Outage("down")), fail_open=True)
    with pytest.raises(Refused, match="rpc hook unavailable"):
        await p.rpc(ClientState("sid", "ann", False), "m", None)
