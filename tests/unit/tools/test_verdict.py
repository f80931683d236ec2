"""The verdict of `limpet check`: stickiness, distribution, cookie attributes and warnings."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from limpet.tools.verdict import (
    SHORT_COOKIE_TTL,
    SOCKETIO_SESSION_FLOOR,
    UNNAMED,
    Attempt,
    ClientRun,
    CookieSeen,
    judge,
    parse_set_cookie,
    render_text,
    to_json,
)

NOW = datetime(2026, 11, 22, 0, 0, 0, tzinfo=UTC)


def run(i: int, *names: str, cookies: tuple[str, ...] = ()) -> ClientRun:
    """A client whose attempts were answered by ``names`` ("!reason" marks a failure)."""
    attempts = tuple(
        Attempt(error=n[1:]) if n.startswith("!") else Attempt(backend=n) for n in names
    )
    return ClientRun(client=i, attempts=attempts, set_cookies=cookies)


def codes(verdict: object) -> set[str]:
    return {w.code for w in verdict.warnings}  # type: ignore[attr-defined]


# -- Set-Cookie parsing (RFC 6265 §5.2) ---------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("SRV=a", CookieSeen("SRV", "a")),
        (
            "GCLB=CKz; path=/; HttpOnly; expires=Sat, 22-Nov-2026 00:10:00 GMT",
            CookieSeen(
                "GCLB", "CKz", path="/", httponly=True, expires="Sat, 22-Nov-2026 00:10:00 GMT"
            ),
        ),
        (
            "route=1a2b; Max-Age=172800; Path=/app; Domain=.example.com; SameSite=none; Secure",
            CookieSeen(
                "route",
                "1a2b",
                max_age=172800,
                path="/app",
                domain="example.com",
                samesite="None",
                secure=True,
            ),
        ),
        ("x=y; MAX-AGE=oops; HTTPONLY", CookieSeen("x", "y", httponly=True)),
        ("  spaced = v ; path=/", CookieSeen("spaced", "v", path="/")),
        ("noequals; Path=/", None),
        ("=value", None),
        ("", None),
    ],
)
def test_parse_set_cookie(header: str, expected: CookieSeen | None) -> None:
    assert parse_set_cookie(header) == expected


def test_ttl_max_age_wins_over_expires() -> None:
    c = parse_set_cookie("a=b; Expires=Sun, 22 Nov 2026 00:00:10 GMT; Max-Age=100")
    assert c is not None and c.ttl(NOW) == 100


def test_ttl_from_expires_needs_now() -> None:
    c = parse_set_cookie("a=b; Expires=Sun, 22 Nov 2026 00:01:00 GMT")
    assert c is not None
    assert c.ttl(NOW) == 60
    assert c.ttl(None) is None
    assert CookieSeen("a", "b", expires="not a date").ttl(NOW) is None


@given(st.text(max_size=80))
def test_parse_set_cookie_never_raises(header: str) -> None:
    cookie = parse_set_cookie(header)
    assert cookie is None or cookie.name


# -- stickiness ---------------------------------------------------------------------------------


def test_every_client_on_one_backend_is_sticky() -> None:
    cookie = ("SRV=a; Path=/; Max-Age=3600; HttpOnly; SameSite=Lax",)
    v = judge(
        [run(1, "a", "a", "a", cookies=cookie), run(2, "b", "b", "b", cookies=cookie)], now=NOW
    )
    assert v.ok and v.exit_code == 0
    assert v.distribution == {"a": 1, "b": 1}
    assert v.answers == {"a": 3, "b": 3}
    assert codes(v) == set()


def test_a_client_that_moves_is_not_sticky() -> None:
    v = judge([run(1, "a", "a"), run(2, "a", "b", "a")], now=NOW)
    assert not v.ok and v.exit_code == 1
    assert v.moved_clients == 1 and v.sticky_clients == 1
    assert v.clients[1].moves == 2
    assert {"moved", "no-cookie"} <= codes(v)


def test_failures_are_not_sticky_even_on_one_backend() -> None:
    v = judge([run(1, "a", "!HTTP 400 Session ID unknown"), run(2, "b", "b")], transport="socketio")
    assert not v.ok
    assert v.failed_clients == 1
    failed = next(w for w in v.warnings if w.code == "failed")
    assert "Session ID unknown (x1)" in failed.message


def test_no_clients_is_not_ok() -> None:
    v = judge([])
    assert not v.ok and codes(v) == {"no-clients"}


def test_client_without_any_answer_is_not_sticky() -> None:
    assert not run(1, "!timeout").sticky
    assert not ClientRun(client=1, attempts=()).sticky


# -- warnings -----------------------------------------------------------------------------------


def test_all_clients_on_one_backend_warns() -> None:
    v = judge([run(i, "only", "only") for i in range(3)], now=NOW)
    assert v.ok  # sticky, but suspicious
    assert "one-backend" in codes(v)


def test_unnamed_backend_is_explained_not_blamed_on_one_replica() -> None:
    v = judge([run(i, UNNAMED, UNNAMED) for i in range(3)], transport="socketio")
    assert v.ok
    assert "unnamed-backend" in codes(v) and "one-backend" not in codes(v)


def test_one_client_alone_does_not_warn_one_backend() -> None:
    assert "one-backend" not in codes(judge([run(1, "a")]))


def test_sticky_without_cookie_warns_it_is_not_cookie_affinity() -> None:
    v = judge([run(1, "a", "a"), run(2, "b", "b")])
    warning = next(w for w in v.warnings if w.code == "no-cookie")
    assert warning.severity == "warning" and "client IP" in warning.message


@pytest.mark.parametrize("page_first", [False, True])
def test_websocket_without_cookie_hints_at_page_first(page_first: bool) -> None:
    v = judge([run(1, "a", "b")], transport="websocket", page_first=page_first)
    message = next(w for w in v.warnings if w.code == "no-cookie").message
    assert ("--page-first" in message) is not page_first


def test_socketio_without_cookie_is_only_informed() -> None:
    v = judge([run(1, "a", "a"), run(2, "b", "b")], transport="socketio")
    assert next(w for w in v.warnings if w.code == "no-cookie").severity == "info"


@pytest.mark.parametrize(
    ("ttl", "code"),
    [
        (SOCKETIO_SESSION_FLOOR - 1, "cookie-ttl-too-short"),
        (SOCKETIO_SESSION_FLOOR, "cookie-ttl-short"),
        (SHORT_COOKIE_TTL - 1, "cookie-ttl-short"),
        (SHORT_COOKIE_TTL, None),
    ],
)
def test_cookie_ttl_thresholds(ttl: int, code: str | None) -> None:
    cookie = (f"SRV=a; Max-Age={ttl}; Path=/",)
    v = judge([run(1, "a", cookies=cookie), run(2, "b", cookies=cookie)], now=NOW)
    found = codes(v) & {"cookie-ttl-too-short", "cookie-ttl-short"}
    assert found == ({code} if code else set())


def test_short_ttl_from_expires_is_an_error_for_socketio() -> None:
    cookie = ("SRV=a; Expires=Sun, 22 Nov 2026 00:00:30 GMT",)
    v = judge(
        [run(1, "a", cookies=cookie), run(2, "b", cookies=cookie)], transport="socketio", now=NOW
    )
    w = next(w for w in v.warnings if w.code == "cookie-ttl-too-short")
    assert w.severity == "error" and "30 s" in w.message


def test_samesite_none_without_secure_warns() -> None:
    v = judge([run(1, "a", cookies=("SRV=a; SameSite=None",)), run(2, "b")])
    assert {"samesite-none-insecure", "cookie-not-everyone"} <= codes(v)


def test_cookie_summary_counts_clients_and_values() -> None:
    v = judge(
        [
            run(1, "a", cookies=("SRV=a; Path=/", "SRV=a; Path=/")),
            run(2, "b", cookies=("SRV=b; Path=/",)),
            run(3, "a", cookies=("SRV=a; Path=/", "other=1")),
        ],
        now=NOW,
    )
    summary = {s.cookie.name: s for s in v.cookies}
    assert summary["SRV"].clients == 3 and summary["SRV"].values == 2
    assert summary["other"].clients == 1


# -- reports ------------------------------------------------------------------------------------


def test_text_report_shows_table_cookie_and_verdict() -> None:
    cookie = ("SRV=a; Max-Age=60; Path=/; HttpOnly",)
    v = judge([run(1, "a", "a", cookies=cookie), run(2, "a", "bee", cookies=cookie)], now=NOW)
    text = render_text(v, url="http://lb/", requests=2)
    assert "backend  clients  answers" in text
    assert "bee" in text
    assert "SRV  Max-Age=60; Path=/; no SameSite; HttpOnly (2 clients, 1 distinct values)" in text
    assert "client 2: a -> bee" in text
    assert text.rstrip().endswith("NOT STICKY: 1 clients moved between backends")


def test_text_report_sticky_line() -> None:
    v = judge([run(1, "a"), run(2, "b")])
    assert render_text(v).rstrip().endswith("STICKY: every client stayed on one backend")


def test_json_report_is_plain_json_with_documented_keys() -> None:
    cookie = ("SRV=a; Max-Age=3600; Path=/; SameSite=Lax; Secure; HttpOnly",)
    v = judge([run(1, "a", "a", cookies=cookie), run(2, "b", "!timeout")], now=NOW)
    report = json.loads(json.dumps(to_json(v, url="http://lb/", requests=2)))
    assert set(report) == {
        "version", "url", "transport", "clients", "requests", "ok", "exit_code",
        "sticky_clients", "moved_clients", "failed_clients", "distribution", "cookies",
        "warnings", "per_client",
    }  # fmt: skip
    assert report["ok"] is False and report["exit_code"] == 1
    assert report["distribution"] == {
        "a": {"clients": 1, "answers": 2},
        "b": {"clients": 1, "answers": 1},
    }
    assert report["cookies"][0] == {
        "name": "SRV", "max_age": 3600, "expires": None, "ttl": 3600, "path": "/",
        "domain": None, "samesite": "Lax", "secure": True, "httponly": True, "clients": 1,
        "distinct_values": 1,
    }  # fmt: skip
    assert report["per_client"][1] == {
        "client": 2, "sticky": False, "backends": ["b"], "moves": 0, "attempts": 2,
        "errors": ["timeout"],
    }  # fmt: skip


@given(
    st.lists(
        st.lists(st.sampled_from(["a", "b", "c", "!x"]), min_size=1, max_size=6),
        min_size=1,
        max_size=8,
    )
)
def test_ok_exactly_when_every_client_sticky(paths: list[list[str]]) -> None:
    v = judge([run(i, *p) for i, p in enumerate(paths)])
    expected = all("!x" not in p and len(set(p)) == 1 for p in paths)
    assert v.ok == expected
    assert v.sticky_clients + sum(1 for c in v.clients if not c.sticky) == len(paths)
    assert sum(v.distribution.values()) == sum(1 for p in paths if set(p) - {"!x"})


def test_verdict_module_imports_no_io() -> None:
    """The verdict is sans-IO like the core: importable with the I/O modules blocked."""
    import subprocess
    import sys

    from tests.support.procs import limpet_env

    blocked = ["asyncio", "socket", "selectors", "ssl", "aiohttp", "subprocess"]
    code = f"import sys\nfor n in {blocked!r}:\n    sys.modules[n] = None\nimport limpet.tools.verdict\n"
    result = subprocess.run(
        [sys.executable, "-c", code], env=limpet_env(), capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr


def failing(i: int, *errors: str) -> ClientRun:
    return ClientRun(i, tuple(Attempt(error=e) for e in errors))


def test_every_answer_503_is_said_first_and_cookies_are_not_blamed() -> None:
    v = judge([failing(i, "HTTP 503", "HTTP 503") for i in range(3)])
    assert [w.code for w in v.warnings] == ["every-answer-an-error"]
    assert v.warnings[0].message.startswith("every answer was HTTP 503: the load balancer")
    text = render_text(v, url="http://x/")
    lines = text.splitlines()
    assert lines[2].startswith("error: every answer was HTTP 503")  # right under the heading
    assert "no Set-Cookie" not in text
    assert text.rstrip().endswith("NOT STICKY: every answer was HTTP 503")


def test_mixed_failures_are_not_called_every_answer() -> None:
    """The twin: one answer got through, or one failure was not a status: the usual report."""
    v = judge([failing(0, "HTTP 503"), run(1, "a", "a")])
    assert "every-answer-an-error" not in codes(v) and "failed" in codes(v)
    v = judge([failing(0, "HTTP 503", "connection refused")])
    assert "every-answer-an-error" not in codes(v)
    v = judge([failing(0, "HTTP 502"), failing(1, "WebSocket handshake refused: HTTP 503")])
    assert v.warnings[0].message.startswith("every answer was an HTTP error (502 x1, 503 x1)")
