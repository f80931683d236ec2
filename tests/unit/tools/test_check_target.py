"""`limpet check` command-line validation and backend identification (no sockets)."""

from __future__ import annotations

import argparse

import pytest
from multidict import CIMultiDict

from limpet.errors import UsageError
from limpet.tools import check


def parse(*argv: str) -> check.Target:
    parser = argparse.ArgumentParser()
    check.configure(parser)
    return check.target_from_args(parser.parse_args(list(argv)))


@pytest.mark.parametrize(
    ("argv", "endpoint"),
    [
        (["http://127.0.0.1:8080"], "http://127.0.0.1:8080"),
        (["http://h/x?y=1"], "http://h/x?y=1"),
        (["http://h:81/", "--transport", "websocket"], "ws://h:81/ws"),
        (["https://h/", "--transport", "websocket"], "wss://h/ws"),
        (["http://h/chat/ws", "--transport", "websocket"], "ws://h/chat/ws"),
        (["ws://h/live", "--transport", "websocket"], "ws://h/live"),
        (["http://h/", "--transport", "websocket", "--path", "/echo"], "ws://h/echo"),
        (["http://h/", "--transport", "socketio"], "http://h/socket.io/"),
        (["http://h/app/socket.io", "--transport", "socketio"], "http://h/app/socket.io/"),
    ],
)
def test_endpoint_derived_from_url(argv: list[str], endpoint: str) -> None:
    assert parse(*argv).endpoint == endpoint


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["127.0.0.1:8080"], "no scheme"),
        (["ftp://h/"], "scheme must be"),
        (["http://:80/"], "not valid"),
        (["http://h:99999/"], "not valid"),
        (["ws://h/"], "needs --transport websocket"),
        (["http://h/", "--clients", "0"], "--clients must be at least 1"),
        (["http://h/", "--requests", "-1"], "--requests must be at least 1"),
        (["http://h/", "--timeout", "0"], "--timeout must be positive"),
        (["http://h/", "--identify", "header:"], "--identify"),
        (["http://h/", "--identify", "json:"], "json:FIELD"),
        (["http://h/", "--header", "nocolon"], "NAME:VALUE"),
    ],
)
def test_bad_input_is_a_usage_error(argv: list[str], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        parse(*argv)


def test_extra_headers() -> None:
    assert parse("http://h/", "--header", "Host: app.example").headers == {"Host": "app.example"}


def headers(**kw: str) -> CIMultiDict[str]:
    return CIMultiDict({k.replace("_", "-"): v for k, v in kw.items()})


@pytest.mark.parametrize(
    ("rule", "status", "hdrs", "body", "backend", "error"),
    [
        ("auto", 200, headers(X_Backend="b1", Content_Type="text/html"), b"<html>", "b1", None),
        ("auto", 200, headers(Content_Type="text/plain"), b"w2\nGET / HTTP/1.1\n", "w2", None),
        ("auto", 200, headers(Content_Type="text/html"), b"<html>", None, "cannot tell"),
        ("body", 200, headers(Content_Type="text/html"), b" pod-7 \n", "pod-7", None),
        ("body", 200, headers(), b"\n", None, "empty first line"),
        ("header:X-Pod", 200, headers(X_Pod="p"), b"", "p", None),
        ("header:X-Pod", 200, headers(), b"", None, "no X-Pod header"),
        ("auto", 503, headers(X_Backend="b1"), b"", None, "HTTP 503"),
        ("json:name", 200, headers(), b'{"name": "hub-2", "clients": 3}', "hub-2", None),
        ("json:name", 200, headers(), b'{"clients": 3}', None, "no 'name' in the JSON body"),
        ("json:name", 200, headers(), b"[1]", None, "not a JSON object"),
        ("json:name", 200, headers(), b"<html>", None, "not a JSON object"),
    ],
)
def test_identify_response(
    rule: str,
    status: int,
    hdrs: CIMultiDict[str],
    body: bytes,
    backend: str | None,
    error: str | None,
) -> None:
    attempt = check.identify_response(rule, status, hdrs, body)
    assert attempt.backend == backend
    if error is None:
        assert attempt.error is None
    else:
        assert attempt.error is not None and error in attempt.error


@pytest.mark.parametrize(
    ("status", "body", "reason"),
    [
        (400, '{"code":1,"message":"Session ID unknown"}', "Session ID unknown"),
        (400, '"Invalid session abc123"', "Session ID unknown"),
        (400, '{"code":3,"message":"Bad request"}', "Bad request"),
        (502, "<html>bad gateway</html>", "<html>bad gateway</html>"),
    ],
)
def test_socketio_failure_reasons_are_grouped(status: int, body: str, reason: str) -> None:
    assert check.SocketIOClient._reason(status, body) == reason
