"""SANS-IO: the upstream HTTP/1.1 response parser of the wire core. Bytes in, events out.

``ResponseParser.feed(data)`` is the one call per read from a backend, as ``RequestParser.feed``
is for a client: it parses as much as it may and returns a list of ``(kind, value)`` events:

- ``(HEAD, ResponseHead)``: a validated response head, its body framing as a value;
- ``(BODY, bytes)``: response body bytes, de-chunked;
- ``(END, None)``: the response ended (a 1xx's end is followed by the next head; after a final
  response's end the parser stops and keeps what follows, see ``buffered``);
- ``(UPGRADE, bytes)``: after a ``101`` head, the bytes that belong to the new protocol;
- ``(ERROR, reason)``: the backend broke HTTP; the parser stays refused.

A body delimited by the connection's close (RFC 9112 §6.3 rule 8) never ends here: the
protocol class sees the close. A response to HEAD is the caller's to end (it knows the method).

The trailer section of a chunked body (RFC 9112 §7.1.2) is bounded like a head (bytes and
fields) and kept in ``trailers`` (None when there was none) until the next ``reset``: the rare
reader that relays trailers (an HTTP/2 stream) takes them at ``END``; no event is added for
them, so the common path's loop is unchanged.

Why hand-written rather than httptools: llhttp calls back into Python once per header field
and once per piece of the message, and needs a new parser object per response; this parses a
head in one pass when its blank line arrives (one call per read), bounds the head, and is the
same source compiled by Cython (see setup.py) with this file as its reference. The field rules
are the request parser's (limpet.proxy.wire.parser): bare LF or CR, obs-fold (RFC 9112 §5.2
lets a proxy answer 502 for it), whitespace before the colon and CTLs in values are refused;
so are Content-Length with Transfer-Encoding, a repeated or non-numeric Content-Length
(§6.3, as llhttp refused them), and a bad chunk-size line.
"""

from __future__ import annotations

import re

try:
    import cython
except ImportError:  # the reference runs without Cython installed
    from limpet.proxy.wire import _cython_shim as cython  # type: ignore[no-redef,unused-ignore]

from limpet.proxy.wire.parser import _FIELD_RE, _TCHAR_TABLE, _VCHAR_TABLE

#: True in the build Cython compiled from this file, False in the reference
COMPILED: bool = cython.compiled

# the event kinds, the same numbers as the request parser's
HEAD = 1
BODY = 2
END = 3
UPGRADE = 4
ERROR = 5

#: Framing of a response body (RFC 9112 §6.3): none, length, chunked, until the backend closes
NONE = 0
LENGTH = 1
CHUNKED = 2
UNTIL_CLOSE = 3

# parser states
_S_HEAD = 0
_S_LENGTH = 1
_S_CHUNK_SIZE = 2
_S_CHUNK_DATA = 3
_S_CHUNK_CRLF = 4
_S_TRAILERS = 5
_S_CLOSE = 6
_S_DONE = 7
_S_UPGRADED = 8
_S_ERROR = 9

MAX_CHUNK_LINE = 4096

_STATUS_LINE_RE = rb"HTTP/1\.([01]) ([0-9]{3})(?: ([\t \x21-\x7e\x80-\xff]*))?"
_STATUS_LINE = re.compile(_STATUS_LINE_RE)
_WHOLE_HEAD = re.compile(_STATUS_LINE_RE + rb"(?:\r\n" + _FIELD_RE + rb")*")
_FIELDS = re.compile(rb"\r\n" + _FIELD_RE)
_CHUNK_SIZE = re.compile(rb"([0-9A-Fa-f]{1,16})((?:[ \t]*;[ \t\x21-\x7e\x80-\xff]*)?)")


class ResponseHead:
    """One validated response head: status, reason, the fields in order, the body framing
    (NONE, LENGTH of ``length`` bytes, CHUNKED, UNTIL_CLOSE) and whether the backend keeps the
    connection open after it (RFC 9112 §9.3)."""

    __slots__ = ("framing", "headers", "keep_alive", "length", "reason", "status", "version")

    def __init__(
        self,
        status: int,
        reason: bytes,
        version: str,
        headers: list[tuple[bytes, bytes]],
        framing: int,
        length: int,
        keep_alive: bool,
    ) -> None:
        self.status = status
        self.reason = reason
        self.version = version
        self.headers = headers
        self.framing = framing
        self.length = length
        self.keep_alive = keep_alive

    def __repr__(self) -> str:
        return (
            f"ResponseHead({self.status} {self.reason!r} HTTP/{self.version}, "
            f"fields={len(self.headers)}, framing={self.framing}, length={self.length}, "
            f"keep_alive={self.keep_alive})"
        )

    def astuple(self) -> tuple[object, ...]:
        """Every field, for comparing two cores' decisions."""
        return (
            self.status,
            self.reason,
            self.version,
            self.headers,
            self.framing,
            self.length,
            self.keep_alive,
        )


class ResponseParser:
    """Parses the responses of one upstream connection; see the module docstring."""

    __slots__ = (
        "buf",
        "max_header_bytes",
        "max_headers",
        "remaining",
        "state",
        "trailer_bytes",
        "trailers",
    )

    def __init__(self, max_header_bytes: int, max_headers: int) -> None:
        self.max_header_bytes = max_header_bytes
        self.max_headers = max_headers
        self.buf = b""
        self.state = _S_HEAD
        self.remaining = 0  # body bytes left in this Content-Length body or chunk
        self.trailer_bytes = 0
        #: the last chunked body's trailer fields, as (name, value), or None
        self.trailers: list[tuple[bytes, bytes]] | None = None

    def __repr__(self) -> str:
        return f"ResponseParser(state={self.state}, buffered={len(self.buf)})"

    @property
    def buffered(self) -> int:
        """Bytes held, not parsed: after a final response's end, bytes the backend sent beyond
        it (the connection is then not reused: they belong to no request)."""
        return len(self.buf)

    @property
    def refused(self) -> bool:
        return self.state == _S_ERROR

    def reset(self) -> None:
        """Ready for the next response on a reused connection (nothing may be buffered)."""
        self.state = _S_HEAD
        self.buf = b""
        self.remaining = 0
        self.trailers = None

    @cython.locals(
        buf=bytes,
        pos=cython.Py_ssize_t,
        end=cython.Py_ssize_t,
        stop=cython.Py_ssize_t,
        window=cython.Py_ssize_t,
        last=cython.Py_ssize_t,
        take=cython.Py_ssize_t,
    )
    def feed(self, data: bytes) -> list[tuple[int, object]]:
        """Parse ``data`` (after what is buffered); return the events it completes."""
        events: list[tuple[int, object]] = []
        state = self.state
        if state in (_S_CLOSE, _S_UPGRADED):
            if data:
                events.append((BODY if state == _S_CLOSE else UPGRADE, data))
            return events
        if state == _S_ERROR:
            return events
        buf = self.buf + data if self.buf else data
        if state == _S_DONE:
            self.buf = buf
            return events
        pos = 0
        end = len(buf)
        while pos < end:
            if state == _S_HEAD:
                stop = buf.find(b"\r\n\r\n", pos)
                window = pos + self.max_header_bytes
                if stop < 0 or stop + 4 > window:
                    # no whole head yet: a bare LF in it (which can never end a head) is
                    # refused now, not at the timeout; a whole head's is found by _refusal
                    # (neither scanner accepts one). Either way the verdict depends only on
                    # the first max_header_bytes, so every split of the bytes gets the same.
                    last = min(end, window)
                    if buf.count(b"\n", pos, last) != buf.count(b"\r\n", pos, last):
                        return self._fail(events, "bare LF in the response head")
                    if end > window:
                        return self._fail(events, "response head too large")
                    break
                head = self._head(buf, pos, stop)
                if type(head) is str:
                    return self._fail(events, head)
                assert isinstance(head, ResponseHead)
                pos = stop + 4
                events.append((HEAD, head))
                status = head.status
                if status == 101:
                    # RFC 9110 §15.2.2: the connection switches protocol after this head
                    self.state = _S_UPGRADED
                    self.buf = b""
                    events.append((UPGRADE, buf[pos:]))
                    return events
                framing = head.framing
                if framing == LENGTH:
                    self.remaining = head.length
                    state = _S_LENGTH
                elif framing == CHUNKED:
                    state = _S_CHUNK_SIZE
                elif framing == UNTIL_CLOSE:
                    state = _S_CLOSE
                    if pos < end:
                        events.append((BODY, buf[pos:]))
                    pos = end
                else:
                    events.append((END, None))
                    if status >= 200:
                        state = _S_DONE
                        break
            elif state == _S_LENGTH:
                take = min(self.remaining, end - pos)
                events.append((BODY, buf[pos : pos + take]))
                pos += take
                self.remaining -= take
                if self.remaining == 0:
                    events.append((END, None))
                    state = _S_DONE
                    break
            elif state == _S_CHUNK_SIZE:
                stop = buf.find(b"\r\n", pos)
                if stop < 0 or stop - pos > MAX_CHUNK_LINE:
                    if end - pos > MAX_CHUNK_LINE or buf.find(b"\n", pos) >= 0:
                        return self._fail(events, "bad chunk-size line")
                    break
                m = _CHUNK_SIZE.fullmatch(buf, pos, stop)
                if m is None:
                    return self._fail(events, "bad chunk-size line")
                size = int(m.group(1), 16)
                pos = stop + 2
                if size == 0:
                    self.trailer_bytes = 0
                    self.trailers = None
                    state = _S_TRAILERS
                else:
                    self.remaining = size
                    state = _S_CHUNK_DATA
            elif state == _S_CHUNK_DATA:
                take = min(self.remaining, end - pos)
                events.append((BODY, buf[pos : pos + take]))
                pos += take
                self.remaining -= take
                if self.remaining == 0:
                    state = _S_CHUNK_CRLF
            elif state == _S_CHUNK_CRLF:
                if end - pos < 2:
                    if buf[pos] != 13:  # b"\r"
                        return self._fail(events, "chunk without CRLF")
                    break
                if buf[pos] != 13 or buf[pos + 1] != 10:
                    return self._fail(events, "chunk without CRLF")
                pos += 2
                state = _S_CHUNK_SIZE
            else:  # _S_TRAILERS: RFC 9112 §7.1.2, fields after the last chunk; kept aside
                stop = buf.find(b"\r\n", pos)
                window = pos + self.max_header_bytes - self.trailer_bytes
                if buf.find(b"\n", pos, min(end if stop < 0 else stop, window)) >= 0:
                    return self._fail(events, "bad trailer field")
                if stop < 0 or stop + 2 > window:
                    if end > window:
                        return self._fail(events, "response trailers too large")
                    break
                self.trailer_bytes += stop + 2 - pos
                if stop == pos:
                    pos += 2
                    events.append((END, None))
                    state = _S_DONE
                    break
                m = _FIELD_MATCH.fullmatch(buf, pos, stop)
                if m is None:
                    return self._fail(events, "bad trailer field")
                if self.trailers is None:
                    self.trailers = []
                elif len(self.trailers) >= self.max_headers:
                    return self._fail(events, "too many response trailer fields")
                self.trailers.append((m.group(1), m.group(2)))
                pos = stop + 2
        self.state = state
        self.buf = buf[pos:] if pos < end else b""
        return events

    def _fail(self, events: list[tuple[int, object]], reason: str) -> list[tuple[int, object]]:
        self.state = _S_ERROR
        self.buf = b""
        events.append((ERROR, reason))
        return events

    @cython.locals(eol=cython.Py_ssize_t, i=cython.Py_ssize_t)
    def _head(self, buf: bytes, start: int, stop: int) -> ResponseHead | str:
        """Validate the head in ``buf[start:stop]`` (without its blank line); a str says why
        it is refused."""
        eol = buf.find(b"\r\n", start, stop)
        if eol < 0:
            eol = stop
        headers: list[tuple[bytes, bytes]]
        if cython.compiled:
            scanned = _scan_response(buf, start, eol, stop)
            if scanned is None:
                return self._refusal(buf, start, eol, stop)
            minor, status, reason, headers = scanned
            version = "1.1" if minor == 49 else "1.0"
        else:
            m = _WHOLE_HEAD.fullmatch(buf, start, stop)
            if m is None:
                return self._refusal(buf, start, eol, stop)
            headers = _FIELDS.findall(buf, eol, stop)
            version = "1.1" if m.group(1) == b"1" else "1.0"
            status = int(m.group(2))
            reason = m.group(3) or b""
        if len(headers) > self.max_headers:
            return "too many response header fields"
        if status < 100:
            return "bad status code"
        keep_alive = version == "1.1"
        framing = UNTIL_CLOSE
        length = 0
        te = b""
        has_te = False
        has_cl = False
        for i in range(len(headers)):
            name = headers[i][0]
            n = len(name)
            # only a few names matter here; compare lengths before lowering
            if n == 14 or n == 17 or n == 10:
                lname = name.lower()
                if lname == b"content-length":
                    if has_cl:
                        return "repeated Content-Length"
                    has_cl = True
                    value = headers[i][1]
                    # 1*DIGIT (RFC 9110 §8.6); bytes.isdigit() is ASCII digits only
                    if not value.isdigit() or len(value) > 18:
                        return "bad Content-Length"
                    length = int(value)
                elif lname == b"transfer-encoding":
                    te = te + b"," + headers[i][1] if has_te else headers[i][1]
                    has_te = True
                elif lname == b"connection":
                    value = headers[i][1]
                    if value == b"keep-alive" or value == b"close":  # the usual, in one step
                        keep_alive = value != b"close" and (keep_alive or version == "1.0")
                        continue
                    for token in value.split(b","):
                        token = token.strip(b" \t").lower()
                        if token == b"close":
                            keep_alive = False
                        elif token == b"keep-alive" and version == "1.0":
                            keep_alive = True
        if has_te and has_cl:
            return "Content-Length with Transfer-Encoding"
        if status < 200 or status == 204 or status == 304:
            framing = NONE  # RFC 9112 §6.3 rule 1: never a body, whatever the fields say
            length = 0
        elif has_te:
            # rule 4: chunked as the final coding delimits the body, else the close does
            # (no negative index: the compiled build has wraparound off)
            last = te[te.rfind(b",") + 1 :].strip(b" \t").lower()
            framing = CHUNKED if last == b"chunked" else UNTIL_CLOSE
        elif has_cl:
            framing = LENGTH if length > 0 else NONE
        if framing == UNTIL_CLOSE:
            keep_alive = False
        return ResponseHead(status, reason, version, headers, framing, length, keep_alive)

    def _refusal(self, buf: bytes, start: int, eol: int, stop: int) -> str:
        """Why the head in ``buf[start:stop]`` is refused (the rare path: line by line)."""
        if buf.count(b"\n", start, stop) != buf.count(b"\r\n", start, stop):
            return "bare LF in the response head"
        if _STATUS_LINE.fullmatch(buf, start, eol) is None:
            return "bad status line"
        pos = eol + 2
        count = 0
        while pos < stop + 2:
            nl = buf.find(b"\r\n", pos, stop + 2)
            if nl < 0:  # pragma: no cover - the head ends with CRLF
                nl = stop
            if _FIELD_MATCH.fullmatch(buf, pos, nl) is None:
                c = buf[pos]
                if c == 32 or c == 9:
                    return "obs-fold in the response head"
                return "bad header field"
            count += 1
            if count > self.max_headers:
                return "too many response header fields"
            pos = nl + 2
        return "bad header field"  # pragma: no cover


_FIELD_MATCH = re.compile(_FIELD_RE)


@cython.cfunc
@cython.locals(
    p=cython.p_uchar,
    cp=cython.p_char,
    tc=cython.p_uchar,
    vc=cython.p_uchar,
    i=cython.Py_ssize_t,
    a=cython.Py_ssize_t,
    b=cython.Py_ssize_t,
    c=cython.uchar,
    code=cython.Py_ssize_t,
)
def _scan_response(
    buf: bytes, start: cython.Py_ssize_t, eol: cython.Py_ssize_t, stop: cython.Py_ssize_t
) -> object:
    """The compiled build's head scanner: (minor version byte, status, reason, fields), or
    None when anything is refused (the regex walk then says why). Accepts exactly what
    _WHOLE_HEAD accepts and splits as _FIELDS does (the differential tests check it); the
    field loop is the request scanner's (parser._scan_head), repeated because a Cython
    cfunc is not callable across modules without a .pxd."""
    p = cython.cast(cython.p_uchar, cython.cast(cython.p_char, buf))
    # slices of the char pointer become bytes in one call (slicing ``buf`` goes through a
    # slice object); in the reference ``cp`` is ``buf`` itself
    cp = cython.cast(cython.p_char, buf)
    tables = _TCHAR_TABLE
    tc = cython.cast(cython.p_uchar, cython.cast(cython.p_char, tables))
    tables2 = _VCHAR_TABLE
    vc = cython.cast(cython.p_uchar, cython.cast(cython.p_char, tables2))
    # "HTTP/1.x NNN", then the line ends or " reason"
    i = start
    if eol - i < 12:
        return None
    if not (
        p[i] == 72
        and p[i + 1] == 84
        and p[i + 2] == 84
        and p[i + 3] == 80
        and p[i + 4] == 47
        and p[i + 5] == 49
        and p[i + 6] == 46
        and (p[i + 7] == 48 or p[i + 7] == 49)
        and p[i + 8] == 32
    ):
        return None
    minor = p[i + 7]
    code = 0
    for i in range(start + 9, start + 12):
        c = p[i]
        if c < 48 or c > 57:
            return None
        code = code * 10 + (c - 48)
    i = start + 12
    if i < eol:
        if p[i] != 32:
            return None
        i += 1
        a = i
        while i < eol:
            c = p[i]
            if not (vc[c] or c == 32 or c == 9):
                return None
            i += 1
        reason = cp[a:eol]
    else:
        reason = b""
    headers = []
    i = eol
    while i < stop:
        i += 2  # the CRLF that ended the previous line
        a = i
        while i < stop and tc[p[i]]:
            i += 1
        if i == a or i >= stop or p[i] != 58:
            return None
        name = cp[a:i]
        i += 1
        while i < stop and (p[i] == 32 or p[i] == 9):
            i += 1
        a = i
        b = i
        while i < stop:
            c = p[i]
            if vc[c]:
                i += 1
                b = i
            elif c == 32 or c == 9:
                i += 1
            elif c == 13 and p[i + 1] == 10:
                break
            else:
                return None
        headers.append((name, cp[a:b]))
    return (minor, code, reason, headers)
