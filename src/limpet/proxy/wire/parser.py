"""SANS-IO: the downstream HTTP/1.1 request parser of the wire core. Bytes in, events out.

``RequestParser.feed(data)`` is the one call per socket read: it appends ``data`` to a bounded
buffer, parses as much as it may and returns a list of events, each a ``(kind, value)`` tuple:

- ``(HEAD, RequestHead)``: a validated request head, its body framing as a value;
- ``(BODY, bytes)``: request body bytes, de-chunked;
- ``(END, None)``: the request ended (trailers, if any, are dropped);
- ``(UPGRADE, bytes)``: the head asked for an upgrade; the bytes after it belong to the new
  protocol (the parser hands over everything it gets from now on);
- ``(ERROR, (status, reason))``: the byte stream is refused from here on (400/431/501); no
  event for the broken request follows and the parser stays refused.

Why hand-written rather than httptools: llhttp calls back into Python once per header and gives
no way to stop at a request boundary, so an unterminated line could only be refused when it
ended and a pipelining client could queue requests without bound. Here a head is parsed in one
pass when its blank line arrives, an unterminated head is refused (431) as soon as it passes the
limit, and after ``max_pipeline`` unanswered heads the parser stops and keeps the rest buffered
(the protocol then stops reading) until ``answered()``.

The rules are RFC 9112's strict ones, the same that llhttp's strict mode applied before (the
integration tests in tests/integration/proxy/test_bad_input.py pin each of them):
CL with TE (§6.1), repeated or list Content-Length (§6.3), non-chunked final coding (§6.1),
TE in HTTP/1.0 (§6.1: faulty; refused and closed), chunk-size 1*HEXDIG (§7.1), bare LF or CR
(§2.2), obs-fold (§5.2), whitespace before the colon (§5.1), CTLs in values (§5.5), one Host
(§3.2). The same module compiles with Cython (see setup.py); keep it plain Python that Cython
accepts: no generators or closures on the hot path.
"""

from __future__ import annotations

import re

try:
    import cython
except ImportError:  # the reference runs without Cython installed
    from limpet.proxy.wire import _cython_shim as cython  # type: ignore[no-redef,unused-ignore]

#: True in the build Cython compiled from this file, False in the reference
COMPILED: bool = cython.compiled

HEAD = 1
BODY = 2
END = 3
UPGRADE = 4
ERROR = 5

#: Framing of a request body (RFC 9112 §6.3): none (no body), length, chunked.
NONE = 0
LENGTH = 1
CHUNKED = 2

# parser states
_S_HEAD = 0
_S_LENGTH = 1
_S_CHUNK_SIZE = 2
_S_CHUNK_DATA = 3
_S_CHUNK_CRLF = 4
_S_TRAILERS = 5
_S_UPGRADED = 6
_S_ERROR = 7

#: longest chunk-size line (size and extensions) accepted; nginx and HAProxy allow a few KB
MAX_CHUNK_LINE = 4096
#: 16 hex digits is 2**64; more is an attack, not a body
MAX_CHUNK_HEX = 16

# RFC 9110 §5.6.2 token; request-target is any VCHAR or obs-text (no SP, no CTL)
_TCHAR = rb"!#$%&'*+\-.^_`|~0-9A-Za-z"
_REQUEST_LINE_RE = rb"([" + _TCHAR + rb"]+) ([\x21-\x7e\x80-\xff]+) HTTP/1\.([01])"
# RFC 9110 §5.5 field-value: VCHAR, obs-text, SP and HTAB inside; OWS trimmed around it
_VALUE_RE = rb"((?:[\x21-\x7e\x80-\xff](?:[ \t\x21-\x7e\x80-\xff]*[\x21-\x7e\x80-\xff])?)?)"
_FIELD_RE = rb"([" + _TCHAR + rb"]+):[ \t]*" + _VALUE_RE + rb"[ \t]*"
_REQUEST_LINE = re.compile(_REQUEST_LINE_RE)
_FIELD = re.compile(_FIELD_RE)
# the common case in two C-level calls: one match validates the whole head, one findall
# extracts every field (a Python call per field cost more than the rest of the parse); the
# line-by-line walk runs only for a head this refuses, to say why
_WHOLE_HEAD = re.compile(_REQUEST_LINE_RE + rb"(?:\r\n" + _FIELD_RE + rb")*")
_FIELDS = re.compile(rb"\r\n" + _FIELD_RE)
_CHUNK_SIZE = re.compile(rb"([0-9A-Fa-f]{1,16})((?:[ \t]*;[ \t\x21-\x7e\x80-\xff]*)?)")
_DIGITS = re.compile(rb"[0-9]{1,18}")


def origin_form(
    target: bytes, headers: list[tuple[bytes, bytes]], lnames: list[bytes]
) -> tuple[bytes, list[tuple[bytes, bytes]], list[bytes]]:
    """An absolute-form target as the backend gets it: origin-form, its authority as Host.

    RFC 9112 §3.2.2: a server must accept absolute-form; its authority replaces any Host field
    (§3.2.3), and a proxy forwarding to an origin sends origin-form. The head's ``target``,
    ``headers`` and ``lnames`` are the rewritten ones, so nothing after the parser sees the
    absolute form.
    """
    authority, slash, rest = target.split(b"://", 1)[1].partition(b"/")
    target = b"/" + rest if slash else b"/"
    if authority:
        headers = [(n, v) for n, v in headers if n.lower() != b"host"]
        headers.append((b"Host", authority))
        lnames = [n.lower() for n, _ in headers]
    return target, headers, lnames


class RequestHead:
    """One validated request head: what the exchange needs, nothing parsed twice.

    ``headers`` keeps the client's names and values in order; ``lnames`` are the lower-cased
    names, parallel to it. ``framing`` is NONE, LENGTH (``length`` bytes) or CHUNKED. ``target``
    is in origin-form (or ``*``): an absolute-form one was rewritten (``origin_form``).
    """

    __slots__ = (
        "expect_continue",
        "framing",
        "headers",
        "keep_alive",
        "length",
        "lnames",
        "method",
        "target",
        "upgrade",
        "version",
    )

    def __init__(
        self,
        method: bytes,
        target: bytes,
        version: str,
        headers: list[tuple[bytes, bytes]],
        lnames: list[bytes],
        keep_alive: bool,
        framing: int,
        length: int,
        upgrade: bool,
        expect_continue: bool,
    ) -> None:
        self.method = method
        self.target = target
        self.version = version
        self.headers = headers
        self.lnames = lnames
        self.keep_alive = keep_alive
        self.framing = framing
        self.length = length
        self.upgrade = upgrade
        self.expect_continue = expect_continue

    def __repr__(self) -> str:
        return (
            f"RequestHead({self.method!r} {self.target[:60]!r} HTTP/{self.version}, "
            f"fields={len(self.headers)}, framing={self.framing}, length={self.length}, "
            f"keep_alive={self.keep_alive}, upgrade={self.upgrade})"
        )

    def astuple(self) -> tuple[object, ...]:
        """Every field, for comparing two cores' decisions."""
        return (
            self.method,
            self.target,
            self.version,
            self.headers,
            self.lnames,
            self.keep_alive,
            self.framing,
            self.length,
            self.upgrade,
            self.expect_continue,
        )


class RequestParser:
    """Parses the requests of one downstream connection; see the module docstring."""

    __slots__ = (
        "buf",
        "max_header_bytes",
        "max_headers",
        "max_pipeline",
        "pending",
        "remaining",
        "state",
        "trailer_bytes",
    )

    def __init__(self, max_header_bytes: int, max_headers: int, max_pipeline: int = 8) -> None:
        self.max_header_bytes = max_header_bytes
        self.max_headers = max_headers
        self.max_pipeline = max_pipeline
        self.buf = b""
        self.state = _S_HEAD
        self.remaining = 0  # body bytes left in this Content-Length body or chunk
        self.pending = 0  # heads handed out and not yet answered
        self.trailer_bytes = 0

    def __repr__(self) -> str:
        return (
            f"RequestParser(state={self.state}, buffered={len(self.buf)}, pending={self.pending})"
        )

    @property
    def buffered(self) -> int:
        """Bytes held, not parsed yet (bounded: the protocol stops reading while held)."""
        return len(self.buf)

    @property
    def refused(self) -> bool:
        return self.state == _S_ERROR

    @property
    def stalled(self) -> bool:
        """Heads are waiting: ``max_pipeline`` requests are unanswered; stop reading."""
        return self.state == _S_HEAD and self.pending >= self.max_pipeline

    def answered(self) -> None:
        """A request handed out earlier got its whole response: one more head may be parsed."""
        if self.pending > 0:
            self.pending -= 1

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
        if state == _S_UPGRADED:
            if data:
                events.append((UPGRADE, data))
            return events
        if state == _S_ERROR:
            return events
        buf = self.buf + data if self.buf else data
        pos = 0
        end = len(buf)
        while pos < end:
            if state == _S_HEAD:
                if self.pending >= self.max_pipeline:
                    break
                # RFC 9112 §2.2: empty lines before a request line are ignored
                while buf.startswith(b"\r\n", pos):
                    pos += 2
                if pos >= end:
                    break
                stop = buf.find(b"\r\n\r\n", pos)
                window = pos + self.max_header_bytes
                if stop < 0 or stop + 4 > window:
                    # no whole head yet: a bare LF in it (which can never end a head) is
                    # refused now, not at the timeout; a whole head's is found by _refusal
                    # (neither scanner accepts one). Either way the verdict depends only on
                    # the first max_header_bytes, so every split of the bytes gets the same.
                    last = min(end, window)
                    if buf.count(b"\n", pos, last) != buf.count(b"\r\n", pos, last):
                        return self._fail(events, 400, "malformed request: bare LF")
                    if end > window:
                        return self._fail(events, 431, "request head too large")
                    break
                head = self._head(buf, pos, stop)
                if type(head) is tuple:
                    return self._fail(events, head[0], head[1])
                assert isinstance(head, RequestHead)
                pos = stop + 4
                self.pending += 1
                events.append((HEAD, head))
                if head.upgrade:
                    # the request itself has no body; what follows is the new protocol's
                    state = self.state = _S_UPGRADED
                    self.buf = b""
                    events.append((END, None))
                    events.append((UPGRADE, buf[pos:]))
                    return events
                if head.framing == LENGTH:
                    self.remaining = head.length
                    state = _S_LENGTH
                elif head.framing == CHUNKED:
                    state = _S_CHUNK_SIZE
                else:
                    events.append((END, None))
            elif state == _S_LENGTH:
                take = min(self.remaining, end - pos)
                events.append((BODY, buf[pos : pos + take]))
                pos += take
                self.remaining -= take
                if self.remaining == 0:
                    events.append((END, None))
                    state = _S_HEAD
            elif state == _S_CHUNK_SIZE:
                stop = buf.find(b"\r\n", pos)
                if stop < 0 or stop - pos > MAX_CHUNK_LINE:
                    if end - pos > MAX_CHUNK_LINE or buf.find(b"\n", pos) >= 0:
                        return self._fail(events, 400, "malformed request: bad chunk-size line")
                    break
                m = _CHUNK_SIZE.fullmatch(buf, pos, stop)
                if m is None:
                    return self._fail(events, 400, "malformed request: bad chunk-size line")
                size = int(m.group(1), 16)
                pos = stop + 2
                if size == 0:
                    self.trailer_bytes = 0
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
                        return self._fail(events, 400, "malformed request: chunk without CRLF")
                    break
                if buf[pos] != 13 or buf[pos + 1] != 10:
                    return self._fail(events, 400, "malformed request: chunk without CRLF")
                pos += 2
                state = _S_CHUNK_SIZE
            else:  # _S_TRAILERS: RFC 9112 §7.1.2, fields after the last chunk; dropped
                stop = buf.find(b"\r\n", pos)
                window = pos + self.max_header_bytes - self.trailer_bytes  # as for the head
                if buf.find(b"\n", pos, min(end if stop < 0 else stop, window)) >= 0:
                    return self._fail(events, 400, "malformed request: bad trailer field")
                if stop < 0 or stop + 2 > window:
                    if end > window:
                        return self._fail(events, 431, "request trailers too large")
                    break
                self.trailer_bytes += stop + 2 - pos
                if stop == pos:
                    pos += 2
                    events.append((END, None))
                    state = _S_HEAD
                    continue
                if _FIELD.fullmatch(buf, pos, stop) is None:
                    return self._fail(events, 400, "malformed request: bad trailer field")
                pos = stop + 2
        self.state = state
        self.buf = buf[pos:] if pos < end else b""
        return events

    def _fail(
        self, events: list[tuple[int, object]], status: int, reason: str
    ) -> list[tuple[int, object]]:
        self.state = _S_ERROR
        self.buf = b""
        events.append((ERROR, (status, reason)))
        return events

    @cython.locals(eol=cython.Py_ssize_t, i=cython.Py_ssize_t)
    def _head(self, buf: bytes, start: int, stop: int) -> RequestHead | tuple[int, str]:
        """Validate the head in ``buf[start:stop]`` (without its blank line)."""
        eol = buf.find(b"\r\n", start, stop)
        if eol < 0:
            eol = stop
        headers: list[tuple[bytes, bytes]]
        if cython.compiled:
            # the compiled build scans bytes in C (_scan_head); the reference uses the regexes
            # below; the differential tests hold both to the same verdicts and values
            scanned = _scan_head(buf, start, eol, stop)
            if scanned is None:
                return self._refusal(buf, start, eol, stop)
            method, target, minor, headers = scanned
            version = "1.1" if minor == 49 else "1.0"
        else:
            m = _WHOLE_HEAD.fullmatch(buf, start, stop)
            if m is None:
                return self._refusal(buf, start, eol, stop)
            headers = _FIELDS.findall(buf, eol, stop)
            method = m.group(1)
            target = m.group(2)
            version = "1.1" if m.group(3) == b"1" else "1.0"
        if len(headers) > self.max_headers:
            return (431, "too many request header fields")
        lnames = [name.lower() for name, _ in headers]
        if method == b"CONNECT":
            return (501, "CONNECT is not supported")
        hosts = lnames.count(b"host")
        # RFC 9112 §3.2: a request without Host (HTTP/1.1) or with more than one is a 400
        if hosts > 1 or (version == "1.1" and not hosts):
            return (400, "a request needs exactly one Host header")
        framing = NONE
        length = 0
        keep_alive = version == "1.1"
        upgrade = False
        expect_continue = False
        if b"content-length" in lnames or b"transfer-encoding" in lnames:
            te = b""
            cl = b""
            has_te = False
            has_cl = False
            for i in range(len(lnames)):
                ln = lnames[i]
                if ln == b"content-length":
                    if has_cl:  # RFC 9112 §6.3: repeated Content-Length is refused
                        return (400, "malformed request: repeated Content-Length")
                    has_cl = True
                    cl = headers[i][1]
                    if _DIGITS.fullmatch(cl) is None:
                        return (400, "malformed request: bad Content-Length")
                elif ln == b"transfer-encoding":
                    te = te + b"," + headers[i][1] if has_te else headers[i][1]
                    has_te = True
            if has_te:
                if has_cl:
                    return (400, "malformed request: Content-Length with Transfer-Encoding")
                if version == "1.0":
                    # RFC 9112 §6.1: TE in HTTP/1.0 is faulty framing; refuse and close
                    return (400, "malformed request: Transfer-Encoding in HTTP/1.0")
                if te.strip(b" \t").lower() != b"chunked":
                    # chunked must be the final coding (§6.1) and the only one: another coding
                    # would be lost when the body is re-framed for the backend
                    return (400, "malformed request: unsupported Transfer-Encoding")
                framing = CHUNKED
            else:
                length = int(cl)
                if length > 0:
                    framing = LENGTH
        if b"connection" in lnames:
            for i in range(len(lnames)):
                if lnames[i] == b"connection":
                    for token in headers[i][1].split(b","):
                        token = token.strip(b" \t").lower()
                        if token == b"close":
                            keep_alive = False
                        elif token == b"keep-alive":
                            if version == "1.0":
                                keep_alive = True
                        elif token == b"upgrade":
                            upgrade = b"upgrade" in lnames
        if b"expect" in lnames:
            for i in range(len(lnames)):
                if lnames[i] == b"expect" and headers[i][1].lower() == b"100-continue":
                    expect_continue = True
        if upgrade and version == "1.0":
            upgrade = False  # RFC 9110 §7.8: Upgrade is an HTTP/1.1 mechanism
        if upgrade and framing != NONE:
            upgrade = False  # an upgrade with a body is a plain request (as llhttp treats it)
        if target[0] != 47 and b"://" in target:  # (47: "/")
            target, headers, lnames = origin_form(target, headers, lnames)
        return RequestHead(
            method,
            target,
            version,
            headers,
            lnames,
            keep_alive,
            framing,
            length,
            upgrade,
            expect_continue,
        )

    def _refusal(self, buf: bytes, start: int, eol: int, stop: int) -> tuple[int, str]:
        """Why the head in ``buf[start:stop]`` is refused (the rare path: line by line)."""
        if buf.count(b"\n", start, stop) != buf.count(b"\r\n", start, stop):
            return (400, "malformed request: bare LF")
        if _REQUEST_LINE.fullmatch(buf, start, eol) is None:
            return (400, "malformed request: bad request line")
        pos = eol + 2
        count = 0
        while pos < stop + 2:
            nl = buf.find(b"\r\n", pos, stop + 2)
            if nl < 0:  # pragma: no cover - the head ends with CRLF
                nl = stop
            if _FIELD.fullmatch(buf, pos, nl) is None:
                c = buf[pos]
                if c == 32 or c == 9:
                    return (400, "malformed request: obs-fold is not allowed")
                return (400, "malformed request: bad header field")
            count += 1
            if count > self.max_headers:
                return (431, "too many request header fields")
            pos = nl + 2
        return (400, "malformed request: bad header field")  # pragma: no cover


_TCHAR_TABLE = bytes(
    1 if re.fullmatch(rb"[" + _TCHAR + rb"]", bytes([c])) else 0 for c in range(256)
)
_VCHAR_TABLE = bytes(1 if 0x21 <= c <= 0x7E or c >= 0x80 else 0 for c in range(256))


@cython.cfunc
@cython.locals(
    p=cython.p_uchar,
    cp=cython.p_char,
    tc=cython.p_uchar,
    vc=cython.p_uchar,
    i=cython.Py_ssize_t,
    a=cython.Py_ssize_t,
    b=cython.Py_ssize_t,
    m_end=cython.Py_ssize_t,
    t_start=cython.Py_ssize_t,
    c=cython.uchar,
)
def _scan_head(
    buf: bytes, start: cython.Py_ssize_t, eol: cython.Py_ssize_t, stop: cython.Py_ssize_t
) -> object:
    """The compiled build's head scanner: (method, target, minor version byte, fields), or
    None when anything is refused (the regex walk then says why). Accepts exactly what
    _WHOLE_HEAD accepts and splits as _FIELDS does (the differential tests check it)."""
    p = cython.cast(cython.p_uchar, cython.cast(cython.p_char, buf))
    # slices of the char pointer become bytes in one call (slicing ``buf`` goes through a
    # slice object); in the reference ``cp`` is ``buf`` itself
    cp = cython.cast(cython.p_char, buf)
    tables = _TCHAR_TABLE
    tc = cython.cast(cython.p_uchar, cython.cast(cython.p_char, tables))
    tables2 = _VCHAR_TABLE
    vc = cython.cast(cython.p_uchar, cython.cast(cython.p_char, tables2))
    i = start
    while i < eol and tc[p[i]]:
        i += 1
    if i == start or i >= eol or p[i] != 32:
        return None
    m_end = i
    i += 1
    t_start = i
    while i < eol and vc[p[i]]:
        i += 1
    # " HTTP/1.0" or " HTTP/1.1", then the line ends
    if i == t_start or eol - i != 9:
        return None
    if not (
        p[i] == 32
        and p[i + 1] == 72
        and p[i + 2] == 84
        and p[i + 3] == 84
        and p[i + 4] == 80
        and p[i + 5] == 47
        and p[i + 6] == 49
        and p[i + 7] == 46
        and (p[i + 8] == 48 or p[i + 8] == 49)
    ):
        return None
    minor = p[i + 8]
    target = cp[t_start:i]
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
    return (cp[start:m_end], target, minor, headers)
