"""SANS-IO: what `limpet check` concludes from what it observed, and how it says so.

The probe (``check.py``) only gathers facts: for every client, which backend answered each of its
requests (or what failed), and the Set-Cookie headers it was handed. Everything else (was it
sticky, the distribution, the cookie's attributes and the warnings a user needs) is decided here
from those plain values, so it is tested without a socket or a clock.
"""

from __future__ import annotations

import itertools
import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

Transport = Literal["http", "websocket", "socketio"]
Severity = Literal["error", "warning", "info"]

#: socket.io's defaults: pingInterval 25 s + pingTimeout 20 s. An affinity cookie that expires
#: sooner than that can move a live long-polling session to another replica between two polls.
SOCKETIO_SESSION_FLOOR = 45
#: Below this a realtime session (a chat tab left open) is likely to outlive its cookie.
SHORT_COOKIE_TTL = 300
#: The backend of an answer that worked but did not say which backend gave it (a socket.io server
#: that is not `limpet whoami`): the session's continuity is still checked.
UNNAMED = "(unnamed)"
#: Version of the ``--json`` report's layout (docs/tools.md describes it).
REPORT_VERSION = 1


@dataclass(frozen=True, slots=True)
class Attempt:
    """One request (HTTP), connection (WebSocket) or round trip (socket.io) of one client."""

    backend: str | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and self.backend is not None


@dataclass(frozen=True, slots=True)
class ClientRun:
    """Everything one client (one cookie jar) saw, in order."""

    client: int
    attempts: tuple[Attempt, ...]
    set_cookies: tuple[str, ...] = ()

    @property
    def backends(self) -> tuple[str, ...]:
        """The distinct backends that answered, in the order first seen."""
        seen: dict[str, None] = {}
        for a in self.attempts:
            if a.ok and a.backend is not None:
                seen.setdefault(a.backend, None)
        return tuple(seen)

    @property
    def errors(self) -> tuple[str, ...]:
        return tuple(a.error for a in self.attempts if a.error is not None)

    @property
    def sticky(self) -> bool:
        """Every attempt succeeded and one backend answered them all."""
        return not self.errors and len(self.backends) == 1

    @property
    def moves(self) -> int:
        """How many times the answering backend changed between consecutive successful attempts."""
        names = [a.backend for a in self.attempts if a.ok]
        return sum(1 for prev, cur in itertools.pairwise(names) if prev != cur)


@dataclass(frozen=True, slots=True)
class CookieSeen:
    """One Set-Cookie header, parsed per RFC 6265 §5.2 (attributes are case-insensitive)."""

    name: str
    value: str
    max_age: int | None = None
    expires: str | None = None
    path: str | None = None
    domain: str | None = None
    samesite: str | None = None
    secure: bool = False
    httponly: bool = False

    def ttl(self, now: datetime | None) -> int | None:
        """Seconds the cookie lives; Max-Age wins over Expires (RFC 6265 §5.3 step 3)."""
        if self.max_age is not None:
            return self.max_age
        if self.expires is None or now is None:
            return None
        # imported here: email.utils imports socket (for make_msgid), which the sans-IO
        # boundary keeps out of this module's import
        from email.utils import parsedate_to_datetime

        try:
            when = parsedate_to_datetime(self.expires)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None or now.tzinfo is None:
            when, now = when.replace(tzinfo=None), now.replace(tzinfo=None)
        return int((when - now).total_seconds())


def parse_set_cookie(header: str) -> CookieSeen | None:
    """Parse one Set-Cookie value; None when it has no ``name=`` pair (RFC 6265 §5.2 step 5).

    Hand-written because http.cookies.SimpleCookie rejects many real-world names and values
    (it follows RFC 2109) and drops what it fails to parse without saying so.
    """
    first, _, rest = header.partition(";")
    name, eq, value = first.partition("=")
    name = name.strip()
    if not eq or not name:
        return None
    attrs: dict[str, Any] = {}
    for part in rest.split(";"):
        key, _, val = part.partition("=")
        key, val = key.strip().lower(), val.strip()
        if key == "max-age":
            try:
                attrs["max_age"] = int(val)
            except ValueError:
                continue  # §5.2.2: ignore a Max-Age that is not a number
        elif key == "expires":
            attrs["expires"] = val
        elif key == "path":
            attrs["path"] = val or None
        elif key == "domain":
            attrs["domain"] = val.lstrip(".") or None
        elif key == "samesite":
            attrs["samesite"] = val.capitalize() or None
        elif key == "secure":
            attrs["secure"] = True
        elif key == "httponly":
            attrs["httponly"] = True
    return CookieSeen(name=name, value=value.strip(), **attrs)


@dataclass(frozen=True, slots=True)
class Warning_:
    """A finding the user needs to read; ``code`` is stable for scripts (see docs/tools.md)."""

    code: str
    severity: Severity
    message: str


@dataclass(frozen=True, slots=True)
class CookieSummary:
    """A cookie name as handed out to the clients: its attributes (from the first seen) and counts."""

    cookie: CookieSeen
    clients: int
    values: int
    ttl: int | None


@dataclass(frozen=True, slots=True)
class Verdict:
    """The conclusion: sticky or not, the distribution, the cookies, the warnings, the exit code."""

    transport: Transport
    clients: tuple[ClientRun, ...]
    cookies: tuple[CookieSummary, ...]
    warnings: tuple[Warning_, ...]
    #: backend -> number of clients whose first answer came from it
    distribution: dict[str, int] = field(default_factory=dict)
    #: backend -> number of successful attempts it answered
    answers: dict[str, int] = field(default_factory=dict)

    @property
    def sticky_clients(self) -> int:
        return sum(1 for c in self.clients if c.sticky)

    @property
    def moved_clients(self) -> int:
        return sum(1 for c in self.clients if len(c.backends) > 1)

    @property
    def failed_clients(self) -> int:
        return sum(1 for c in self.clients if c.errors)

    @property
    def ok(self) -> bool:
        return bool(self.clients) and self.sticky_clients == len(self.clients)

    @property
    def exit_code(self) -> int:
        return 0 if self.ok else 1


def judge(
    runs: list[ClientRun] | tuple[ClientRun, ...],
    *,
    transport: Transport = "http",
    now: datetime | None = None,
    page_first: bool = False,
) -> Verdict:
    """Decide from the clients' observations; ``now`` turns an Expires date into a TTL.

    ``page_first``: the clients loaded the page over HTTP before opening their sockets.
    """
    runs = tuple(runs)
    distribution: Counter[str] = Counter()
    answers: Counter[str] = Counter()
    for run in runs:
        if run.backends:
            distribution[run.backends[0]] += 1
        for a in run.attempts:
            if a.ok and a.backend is not None:
                answers[a.backend] += 1

    cookies = _summarise_cookies(runs, now)
    warnings = _warnings(runs, transport, cookies, distribution, page_first)
    return Verdict(
        transport=transport,
        clients=runs,
        cookies=cookies,
        warnings=warnings,
        distribution=dict(sorted(distribution.items())),
        answers=dict(sorted(answers.items())),
    )


def _summarise_cookies(
    runs: tuple[ClientRun, ...], now: datetime | None
) -> tuple[CookieSummary, ...]:
    first: dict[str, CookieSeen] = {}
    clients: Counter[str] = Counter()
    values: dict[str, set[str]] = {}
    for run in runs:
        names_here: set[str] = set()
        for header in run.set_cookies:
            cookie = parse_set_cookie(header)
            if cookie is None:
                continue
            first.setdefault(cookie.name, cookie)
            names_here.add(cookie.name)
            values.setdefault(cookie.name, set()).add(cookie.value)
        clients.update(names_here)
    return tuple(
        CookieSummary(cookie=c, clients=clients[n], values=len(values[n]), ttl=c.ttl(now))
        for n, c in sorted(first.items())
    )


def _warnings(
    runs: tuple[ClientRun, ...],
    transport: Transport,
    cookies: tuple[CookieSummary, ...],
    distribution: Counter[str],
    page_first: bool = False,
) -> tuple[Warning_, ...]:
    out: list[Warning_] = []
    total = len(runs)
    if total == 0:
        return (Warning_("no-clients", "error", "no client ran; nothing to judge"),)
    only_errors = _only_http_errors(runs)
    if only_errors:
        # said first, and instead of blaming cookies: with no answer there is nothing to judge
        return (Warning_("every-answer-an-error", "error", only_errors),)
    moved = [r for r in runs if len(r.backends) > 1]
    failed = [r for r in runs if r.errors]
    if moved:
        out.append(
            Warning_(
                "moved",
                "error",
                f"{len(moved)} of {total} clients were answered by more than one backend: "
                "the endpoint is not sticky",
            )
        )
    if failed:
        kinds = Counter(e for r in failed for e in r.errors)
        common = ", ".join(f"{msg} (x{n})" for msg, n in kinds.most_common(3))
        out.append(
            Warning_("failed", "error", f"{len(failed)} of {total} clients saw failures: {common}")
        )
    if UNNAMED in distribution:
        out.append(
            Warning_(
                "unnamed-backend",
                "info",
                "the backend does not say its name (it is not `limpet whoami`): only that every "
                "session survived its round trips was checked, not which backend served it",
            )
        )
    elif total >= 2 and len(distribution) == 1 and not moved and not failed:
        only = next(iter(distribution))
        out.append(
            Warning_(
                "one-backend",
                "warning",
                f"all {total} clients landed on {only!r}: maybe only one replica is running, or "
                "affinity is by client IP (every client here shares one address)",
            )
        )
    if not cookies:
        if transport == "socketio":
            message = (
                "no Set-Cookie seen: stickiness (if any) comes from the Engine.IO sid, the client "
                "IP or a hash, not from a cookie"
            )
            severity: Severity = "info"
        elif moved:
            message = "no Set-Cookie seen at all: the load balancer handed out no affinity cookie"
            if transport == "websocket" and not page_first:
                message += (
                    " on the WebSocket handshakes; if your clients load a page first, "
                    "--page-first checks that path"
                )
            severity = "warning"
        else:
            message = (
                "no Set-Cookie seen at all: stickiness does not come from a cookie (client IP or "
                "a hash?); it breaks when clients share an address or their address changes"
            )
            severity = "warning"
        out.append(Warning_("no-cookie", severity, message))
    for summary in cookies:
        c = summary.cookie
        ttl = summary.ttl
        if ttl is not None and ttl < SOCKETIO_SESSION_FLOOR:
            out.append(
                Warning_(
                    "cookie-ttl-too-short",
                    "error" if transport == "socketio" else "warning",
                    f"cookie {c.name!r} lives {ttl} s, less than a socket.io session's ping "
                    f"interval + timeout ({SOCKETIO_SESSION_FLOOR} s): a long-polling session can "
                    "move to another replica between two polls",
                )
            )
        elif ttl is not None and ttl < SHORT_COOKIE_TTL:
            out.append(
                Warning_(
                    "cookie-ttl-short",
                    "warning",
                    f"cookie {c.name!r} lives only {ttl} s: a realtime session (a tab left open) "
                    "will likely outlive it and move to another replica",
                )
            )
        if c.samesite == "None" and not c.secure:
            out.append(
                Warning_(
                    "samesite-none-insecure",
                    "warning",
                    f"cookie {c.name!r} has SameSite=None without Secure: browsers reject it",
                )
            )
        if summary.clients < total:
            out.append(
                Warning_(
                    "cookie-not-everyone",
                    "info",
                    f"cookie {c.name!r} was handed to {summary.clients} of {total} clients",
                )
            )
    return tuple(out)


_HTTP_STATUS = re.compile(r"\bHTTP (\d{3})\b")


def _only_http_errors(runs: tuple[ClientRun, ...]) -> str:
    """ "every answer was HTTP 503 ..." when no attempt succeeded and each failed with a status."""
    attempts = [a for r in runs for a in r.attempts]
    if not attempts or any(a.ok for a in attempts):
        return ""
    codes = [_HTTP_STATUS.search(a.error or "") for a in attempts]
    if not all(codes):
        return ""
    counts = Counter(m.group(1) for m in codes if m is not None)
    if len(counts) == 1:
        code = next(iter(counts))
        text = f"every answer was HTTP {code}"
    else:
        text = (
            "every answer was an HTTP error ("
            + ", ".join(f"{c} x{n}" for c, n in counts.most_common())
            + ")"
        )
    if set(counts) <= {"502", "503", "504"}:
        text += (
            ": the load balancer had no backend up to send to (still starting, or all failing "
            "their health checks); start the backends, wait until they answer, and check again"
        )
    return text + "; stickiness could not be judged"


# -- presentation ------------------------------------------------------------------------------


def render_text(verdict: Verdict, *, url: str = "", requests: int | None = None) -> str:
    """The report for people: a verdict line, the distribution table, the cookies, the warnings."""
    lines: list[str] = []
    total = len(verdict.clients)
    per = f", {requests} {_unit(verdict.transport)} each" if requests is not None else ""
    head = f"limpet check {url} ({verdict.transport}, {total} clients{per})".replace("  ", " ")
    lines.append(head)
    lines.append("")
    # when nothing answered, that is the first thing to read, before any table
    first = [w for w in verdict.warnings if w.code == "every-answer-an-error"]
    for w in first:
        lines += [f"{w.severity}: {w.message} [{w.code}]", ""]
    if verdict.distribution or verdict.answers:
        name_w = max([7] + [len(n) for n in verdict.answers | verdict.distribution])
        lines.append(f"  {'backend':<{name_w}}  {'clients':>7}  {'answers':>7}")
        for name in sorted(verdict.answers | verdict.distribution):
            clients = verdict.distribution.get(name, 0)
            answers = verdict.answers.get(name, 0)
            lines.append(f"  {name:<{name_w}}  {clients:>7}  {answers:>7}")
        lines.append("")
    lines.append(
        f"  sticky {verdict.sticky_clients}/{total}   moved {verdict.moved_clients}   "
        f"failed {verdict.failed_clients}"
    )
    lines.append("")
    if verdict.cookies:
        lines.append("cookies:")
        for s in verdict.cookies:
            lines.append(f"  {s.cookie.name}  {describe_cookie(s)}")
    else:
        lines.append("cookies: none seen")
    bad = [c for c in verdict.clients if not c.sticky][:5]
    if bad:
        lines.append("")
        lines.append("clients that were not sticky (first 5):")
        for c in bad:
            path = " -> ".join(a.backend or f"!{a.error}" for a in c.attempts[:8])
            more = " ..." if len(c.attempts) > 8 else ""
            lines.append(f"  client {c.client}: {path}{more}")
    rest = [w for w in verdict.warnings if w not in first]
    if rest:
        lines.append("")
        for w in rest:
            lines.append(f"{w.severity}: {w.message} [{w.code}]")
    lines.append("")
    if verdict.ok:
        lines.append("STICKY: every client stayed on one backend")
    else:
        lines.append("NOT STICKY: " + _why_not(verdict))
    return "\n".join(lines) + "\n"


def describe_cookie(s: CookieSummary) -> str:
    c = s.cookie
    parts = []
    if c.max_age is not None:
        parts.append(f"Max-Age={c.max_age}")
    if c.expires is not None:
        parts.append(f"Expires={c.expires}")
    if c.max_age is None and c.expires is None:
        parts.append("session cookie (no Max-Age/Expires)")
    parts.append(f"Path={c.path}" if c.path else "no Path")
    if c.domain:
        parts.append(f"Domain={c.domain}")
    parts.append(f"SameSite={c.samesite}" if c.samesite else "no SameSite")
    if c.secure:
        parts.append("Secure")
    if c.httponly:
        parts.append("HttpOnly")
    parts.append(f"({s.clients} clients, {s.values} distinct values)")
    return "; ".join(parts[:-1]) + " " + parts[-1]


def _why_not(verdict: Verdict) -> str:
    if not verdict.clients:
        return "no client ran"
    only_errors = _only_http_errors(verdict.clients)
    if only_errors:
        return only_errors.split(":", 1)[0].split(";", 1)[0]
    bits = []
    if verdict.moved_clients:
        bits.append(f"{verdict.moved_clients} clients moved between backends")
    if verdict.failed_clients:
        bits.append(f"{verdict.failed_clients} clients saw failures")
    return ", ".join(bits) or "no backend identified"


def _unit(transport: Transport) -> str:
    return {"http": "requests", "websocket": "connections", "socketio": "round trips"}[transport]


def to_json(verdict: Verdict, *, url: str = "", requests: int | None = None) -> dict[str, Any]:
    """The ``--json`` report (schema in docs/tools.md); plain JSON types only."""
    return {
        "version": REPORT_VERSION,
        "url": url,
        "transport": verdict.transport,
        "clients": len(verdict.clients),
        "requests": requests,
        "ok": verdict.ok,
        "exit_code": verdict.exit_code,
        "sticky_clients": verdict.sticky_clients,
        "moved_clients": verdict.moved_clients,
        "failed_clients": verdict.failed_clients,
        "distribution": {
            name: {
                "clients": verdict.distribution.get(name, 0),
                "answers": verdict.answers.get(name, 0),
            }
            for name in sorted(verdict.answers | verdict.distribution)
        },
        "cookies": [
            {
                "name": s.cookie.name,
                "max_age": s.cookie.max_age,
                "expires": s.cookie.expires,
                "ttl": s.ttl,
                "path": s.cookie.path,
                "domain": s.cookie.domain,
                "samesite": s.cookie.samesite,
                "secure": s.cookie.secure,
                "httponly": s.cookie.httponly,
                "clients": s.clients,
                "distinct_values": s.values,
            }
            for s in verdict.cookies
        ],
        "warnings": [
            {"code": w.code, "severity": w.severity, "message": w.message} for w in verdict.warnings
        ],
        "per_client": [
            {
                "client": c.client,
                "sticky": c.sticky,
                "backends": list(c.backends),
                "moves": c.moves,
                "attempts": len(c.attempts),
                "errors": list(c.errors),
            }
            for c in verdict.clients
        ],
    }
