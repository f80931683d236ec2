"""What the application's answer to a hook means: allow (with changes), deny, or an outage.

The contract (docs/hub.md): HTTP 200 with ``{"result": {...}}`` allows, optionally with changes;
HTTP 200 with ``{"error": {"code": N, "message": "..."}}`` denies, answered to the client as an
error ack; anything else (another status, a body that is not that JSON) is an outage, which the
hub answers by failing closed, or open where configured. Each hook's result is then read by its
own function here, so a result with a wrong field is an outage too, never a half-applied change.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import msgspec

#: the largest answer read from the application
MAX_ANSWER = 1 << 20
#: the longest user id and deny message passed on
MAX_USER = 128
MAX_MESSAGE = 512


@dataclass(frozen=True)
class Allow:
    result: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Deny:
    code: int
    message: str


@dataclass(frozen=True)
class Outage:
    reason: str


Answer = Allow | Deny | Outage


def parse_answer(status: int, body: bytes) -> Answer:
    """The meaning of one HTTP answer of the application."""
    if status != 200:
        return Outage(f"HTTP {status}")
    if len(body) > MAX_ANSWER:
        return Outage(f"answer over {MAX_ANSWER} bytes")
    try:
        doc = msgspec.json.decode(body)
    except msgspec.DecodeError:
        return Outage("answer is not JSON")
    if not isinstance(doc, dict) or ("result" in doc) == ("error" in doc):
        return Outage('answer must be {"result": {...}} or {"error": {...}}')
    if "result" in doc:
        result = doc["result"]
        if not isinstance(result, dict):
            return Outage("result must be an object")
        return Allow(result)
    err = doc["error"]
    if not isinstance(err, dict):
        return Outage('error must be {"code": N, "message": "..."}')
    code, message = err.get("code", 403), err.get("message", "denied")
    if not isinstance(code, int) or isinstance(code, bool) or not isinstance(message, str):
        return Outage("error code must be an integer and message a string")
    return Deny(code, message[:MAX_MESSAGE])


@dataclass(frozen=True)
class Identity:
    """What a connect hook allowed: who the client is, and its presence info."""

    user: str | None = None
    info: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SubscribeGrant:
    """What a subscribe hook allowed: presence info for this channel, and whether the
    decision may be reused while the client stays connected."""

    info: dict[str, Any] = field(default_factory=dict)
    cache: bool = True


@dataclass(frozen=True)
class PublishChange:
    """What a publish hook allowed: the data to publish instead (``replaced``) or as sent."""

    replaced: bool = False
    data: Any = None


class BadResult(ValueError):
    """A result the hub cannot apply: counted as an outage."""


def identity(result: dict[str, Any]) -> Identity:
    user = result.get("user")
    if user is not None and (not isinstance(user, str) or not 0 < len(user) <= MAX_USER):
        raise BadResult(f"connect: user must be a string of 1..{MAX_USER} characters")
    return Identity(user, _info(result, "connect"))


def subscribe_grant(result: dict[str, Any]) -> SubscribeGrant:
    cache = result.get("cache", True)
    if not isinstance(cache, bool):
        raise BadResult("subscribe: cache must be true or false")
    return SubscribeGrant(_info(result, "subscribe"), cache)


def publish_change(result: dict[str, Any]) -> PublishChange:
    if "data" in result:
        return PublishChange(True, result["data"])
    return PublishChange()


def _info(result: dict[str, Any], hook: str) -> dict[str, Any]:
    info = result.get("info", {})
    if not isinstance(info, dict):
        raise BadResult(f"{hook}: info must be an object")
    return info
