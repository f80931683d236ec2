"""Who may do what on the hub: JWT verification, the channel grants of a token's claims, and
the shape every refusal is answered in (``{"error": message}``, socket.io acks and HTTP alike)."""

from __future__ import annotations

import fnmatch
from typing import Any

from limpet.errors import LimpetError


class AuthError(LimpetError):
    """A JWT is missing, malformed, expired, or does not grant the channel."""


def error(message: str, code: int | None = None) -> dict[str, Any]:
    """The one shape of a refusal; ``code`` is the application's (a hook's deny)."""
    if code is None:
        return {"error": message}
    return {"error": message, "code": code}


def granted(claims: dict[str, Any], claim: str, channel: str) -> bool:
    """A claim absent from the token grants every channel; present, it is a list of globs."""
    patterns = claims.get(claim)
    if patterns is None:
        return True
    if isinstance(patterns, str):
        patterns = [patterns]
    return isinstance(patterns, list) and any(
        isinstance(p, str) and fnmatch.fnmatchcase(channel, p) for p in patterns
    )


def verify_token(token: Any, secret: str | None, *, require_exp: bool) -> dict[str, Any]:
    """The claims of an HS256 JWT signed with ``secret``; AuthError for anything else."""
    import jwt

    if not isinstance(token, str) or not token:
        raise AuthError("a JWT is required (auth {token} or ?token=)")
    options: Any = {"require": ["exp"]} if require_exp else None
    try:
        claims = jwt.decode(token, secret or "", algorithms=["HS256"], options=options)
    except jwt.PyJWTError as exc:
        raise AuthError(f"bad JWT: {exc}") from None
    return dict(claims)
