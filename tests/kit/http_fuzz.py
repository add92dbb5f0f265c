"""A seeded generator of malformed HTTP/1.1 requests for the ops server, and a raw-socket sender.

Every case starts from a well-formed request to a real endpoint (a GET of /health, /ready,
/status, /metrics, or a control POST that carries the right bearer token and a valid body) and
gets at least one *fatal* defect, one that must make the server answer 4xx (or close the
connection): a wrong method, an unknown path, a bad version, a broken or oversized header, a
missing, wrong or undecodable credential, a body that is not an operator object, a broken chunked
encoding, a truncation, or plain garbage. Harmless decorations (extra headers, HTTP/1.0, a query
string) are mixed in so that the defects are not always alone. A control request that keeps the
right token always has a body that is invalid at every length the server could read (its framing
is exact), so no case can ever run a command.
"""

from __future__ import annotations

import random
import socket
from dataclasses import dataclass, field
from typing import Callable

READ_PATHS = ("/health", "/ready", "/status", "/metrics")
COMMANDS = ("pause", "resume", "emergency_stop", "rebalance", "flatten", "flatten/AAPL")
METHODS = ("GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD", "TRACE", "CONNECT", "get",
           "Post", "PROPFIND")
TOKEN_CHARS = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"


@dataclass
class Case:
    """One request as bytes; `defects` name what is wrong with it (for failure messages)."""

    data: bytes
    defects: list[str] = field(default_factory=list)


@dataclass
class _Request:
    method: bytes
    target: bytes
    version: bytes
    headers: list[tuple[bytes, bytes | None]]  # None: a raw line
    body: bytes
    chunked: bool = False
    raw_head: bytes | None = None  # a head built by hand (syntax defects)
    framing: bool = True          # add Content-Length / Transfer-Encoding from the body

    def encode(self) -> bytes:
        headers = list(self.headers)
        body = self.body
        if self.framing and self.chunked:
            headers.append((b"Transfer-Encoding", b"chunked"))
            body = _chunk(body)
        elif self.framing and body:
            headers.append((b"Content-Length", str(len(body)).encode()))
        head = self.raw_head
        if head is None:
            lines = [self.method + b" " + self.target + b" " + self.version]
            lines += [k if v is None else k + b": " + v for k, v in headers]
            head = b"\r\n".join(lines) + b"\r\n\r\n"
        return head + body


def _chunk(body: bytes, size: int = 7) -> bytes:
    out = b""
    for i in range(0, len(body), size):
        part = body[i:i + size]
        out += f"{len(part):x}\r\n".encode() + part + b"\r\n"
    return out + b"0\r\n\r\n"


class Fuzzer:
    """`cases(n)` yields n cases from a seeded random.Random (the same seed, the same bytes)."""

    def __init__(self, seed: int, token: str, max_body: int = 4096) -> None:
        self.rng = random.Random(seed)
        self.token = token
        self.max_body = max_body

    # --- building blocks ---------------------------------------------------------------------------
    def _word(self, lo: int = 1, hi: int = 12, chars: str = TOKEN_CHARS) -> str:
        return "".join(self.rng.choice(chars) for _ in range(self.rng.randint(lo, hi)))

    def _base(self) -> tuple[_Request, bool]:
        """A valid request and whether it is a control command (which carries the right token)."""
        r = self.rng
        if r.random() < 0.5:
            return _Request(b"GET", r.choice(READ_PATHS).encode(), b"HTTP/1.1",
                            [(b"Host", b"127.0.0.1")], b""), False
        body = b'{"operator": "fuzz"}'
        return _Request(b"POST", f"/control/{r.choice(COMMANDS)}".encode(), b"HTTP/1.1",
                        [(b"Host", b"127.0.0.1"), (b"Authorization", f"Bearer {self.token}".encode()),
                         (b"Content-Type", b"application/json")], body), True

    def _decorate(self, req: _Request) -> None:
        r = self.rng
        for _ in range(r.randint(0, 3)):
            choice = r.random()
            if choice < 0.4:
                req.headers.append((f"X-{self._word()}".encode(), self._word(0, 40).encode()))
            elif choice < 0.55:
                req.version = b"HTTP/1.0"
            elif choice < 0.7 and req.method == b"GET":
                req.target += b"?" + self._word(1, 20, "abcdefgh=&%0123456789").encode()
            elif choice < 0.85:
                req.headers = [(k.upper() if r.random() < 0.5 else k.lower(), v) for k, v in req.headers]
            elif choice < 0.93:
                req.headers.append((b"Connection", r.choice([b"keep-alive", b"close", b"upgrade"])))
            else:  # obs-fold: a continued header line, which a lenient parser may accept
                req.headers.append((b"X-Folded", b"a\r\n continued"))

    # --- fatal defects (each one alone must give a 4xx or a closed connection) -------------------
    def _bad_method(self, req: _Request, control: bool) -> str:
        r = self.rng
        wrong = [m for m in METHODS if m != ("POST" if control else "GET")]
        junk = ["G ET", "GE\tT", "", "GET\x00", "\u041f\u041e\u0421\u0422", "(GET)", "POST" * 40,
                self._word(1, 20, TOKEN_CHARS + "()<>@,;:\\\"/[]?={} \t\x7f\x80\xff")]
        req.method = r.choice(wrong + junk).encode("utf-8", "surrogateescape")
        if req.method in (b"GET", b"POST"):  # a random word could spell the right one
            req.method = b"PUT"
        return f"method {req.method!r}"

    def _bad_path(self, req: _Request, control: bool) -> str:
        r = self.rng
        # Never a letter, digit, "-", "." or "/": "/control/flatten/AAPL" + junk must not become
        # another valid symbol, nor "/control/pause" + junk the same command.
        junk_suffix = self._word(1, 8, "~!*'_") if r.random() < 0.7 else "%00"
        path = req.target.split(b"?", 1)[0]
        options = [
            path + junk_suffix.encode(),                              # unknown endpoint
            b"/nope/" + self._word().encode(),
            b"/" + self._word(1, 30, "abcdefghij/._-").encode() + b"x",
            b"/control/" + self._word(1, 10, "abcxyz_").encode() + b"q",  # unknown command
            b"/control/flatten/" + r.choice([b"A%20B", b"TOOLONGSYMBOL12", b"A$B", b"%00", b"!!"]),
            b"/control/flatten/AAPL/" + self._word(1, 5, "abc").encode(),
            b"/h\xc3\xa9alth", b"/\xff\xfe", b"/health\x00", b"/he alth",        # not visible ASCII
            b"*", b"http://127.0.0.1/nope", b"/" + b"a" * r.randint(9000, 20000),
        ]
        req.target = r.choice(options)
        return f"path {req.target[:60]!r}"

    def _bad_version(self, req: _Request, control: bool) -> str:
        req.version = self.rng.choice([b"HTTP/2.0", b"HTTP/0.9", b"HTTP/1.x", b"http/1.1", b"HTTP/11",
                                       b"HTTP/9.9", b"", b"HTTP/1.1 extra", b"HTTPS/1.1", b"HTTP/1.1\x00"])
        return f"version {req.version!r}"

    def _bad_header(self, req: _Request, control: bool) -> str:
        r = self.rng
        name = self._word(1, 10).encode()
        kinds: list[tuple[str, Callable[[], None]]] = [
            ("no colon", lambda: req.headers.append((name + b" novalue", None))),
            ("space before colon", lambda: req.headers.append((name + b" ", b"v"))),
            ("NUL in value", lambda: req.headers.append((name, b"a\x00b"))),
            ("bare CR in value", lambda: req.headers.append((name, b"a\rb"))),
            ("non-token name", lambda: req.headers.append((b"X(" + name + b")", b"v"))),
            ("non-ASCII name", lambda: req.headers.append((b"X-\xc3\xa9" + name, b"v"))),
            ("huge header", lambda: req.headers.append((name, b"a" * r.randint(9000, 40000)))),
            ("many headers", lambda: req.headers.extend(
                (f"X-{i}".encode(), b"y" * 80) for i in range(r.randint(120, 400)))),
            ("bad Content-Length", lambda: req.headers.append(
                (b"Content-Length", r.choice([b"abc", b"-1", b"1e3", b"+5", b"0x10", b"5 5", b"", b"9" * 30])))),
            ("conflicting Content-Length", lambda: req.headers.extend(
                [(b"Content-Length", b"5"), (b"Content-Length", b"6")])),
            ("unsupported Transfer-Encoding", lambda: req.headers.append(
                (b"Transfer-Encoding", r.choice([b"gzip", b"chunked, gzip", b"xchunked", b"identity", b"chunked;q=1"])))),
            ("Transfer-Encoding and Content-Length", lambda: req.headers.extend(
                [(b"Transfer-Encoding", b"chunked"), (b"Content-Length", b"3")])),
            ("body too large", lambda: req.headers.append(
                (b"Content-Length", str(self.max_body + r.randint(1, 10**9)).encode()))),
        ]
        if req.version == b"HTTP/1.1":
            kinds.append(("no Host", lambda: req.headers.__setitem__(
                slice(None), [h for h in req.headers if h[0].lower() != b"host"])))
        label, apply = r.choice(kinds)
        apply()
        if label in ("bad Content-Length", "conflicting Content-Length", "unsupported Transfer-Encoding",
                     "Transfer-Encoding and Content-Length", "body too large"):
            req.framing = False  # the defect is the framing: send the body as it is
        return f"header: {label}"

    def _bad_auth(self, req: _Request, control: bool) -> str:
        """Only for control requests: the credential is missing, wrong or undecodable."""
        r = self.rng
        t = self.token
        i = r.randrange(len(t))
        flipped = t[:i] + chr(ord(t[i]) ^ 0x01) + t[i + 1:]
        values = [
            None, b"", b"Bearer", b"Bearer ", b"Basic " + t.encode(), b"Token " + t.encode(),
            b"Bearer \xe9", "Bearer t\u00f8ken".encode(), b"Bearer " + flipped.encode(),
            b"Bearer " + t[:-1].encode(), b"Bearer " + t.encode() + b"x", b"Bearer" + t.encode(),
            b"Bearer " + t.encode() + b"\xff", b"Bearer " + t.encode() + "\u00e9".encode(),
            b"Bearer \x80\x81\x82", b"Bearer " + bytes(r.randrange(0x80, 0x100) for _ in range(len(t))),
            b"Bearer " + t.encode() + b" extra", b"Bearer " + t[: len(t) // 2].encode() + b"\t" + t[len(t) // 2:].encode(),
            b"Bearer " + b"A" * r.randint(100, 6000), b"\xe9\xe9\xe9", "\u00c9\u00e9 t\u00f8ken".encode(),
        ]
        value = r.choice(values)
        others = [h for h in req.headers if h[0].lower() != b"authorization"]
        if value is None:
            req.headers = others
            return "auth: missing"
        if r.random() < 0.1:  # the right header twice, or a right and a wrong one: refused
            req.headers = others + [(b"Authorization", f"Bearer {t}".encode()), (b"Authorization", value)]
            return f"auth: duplicated with {value[:40]!r}"
        req.headers = others + [(b"Authorization", value)]
        return f"auth: {value[:40]!r}"

    def _bad_body(self, req: _Request, control: bool) -> str:
        """Only for control requests with the right token: a body no prefix of which is valid,
        framed exactly (Content-Length or a correct chunked encoding)."""
        r = self.rng
        bodies = [
            b"\xff" + self._word(0, 30).encode(),                     # not UTF-8, not JSON
            b"\xef\xbb\xbf" + b'{"operator": "x"}' + b"\xff",           # BOM, then trailing garbage
            b'{"operator": "\xff' + bytes(r.randrange(0x80, 0x100) for _ in range(5)) + b'"}',
            b'{"operator": "\\ud800"}', b'{"operator": "a\\u0000b"}', b'{"operator": "a\\nb"}',
            b"[" + self._word(0, 20, "0123456789,").encode() + b"]",
            b'"' + self._word(0, 20).encode() + b'"', b"123", b"null", b"true",
            b'{"operator": ' + r.choice([b"7", b"[]", b"{}", b'""', b"true", b"1.5"]) + b"}",
            b'{"operator": "' + b"o" * r.randint(65, 500) + b'"}',
            b"{" + self._word(1, 40).encode(), b"operator=alice", b"\x00\x01\x02",
            '{"operator": "\ud800"}'.encode("utf-8", "surrogatepass"),
        ]
        req.body = r.choice(bodies)
        req.chunked = r.random() < 0.4
        req.headers.append((b"Content-Type", r.choice([b"application/json", b"text/plain", b"\xff"])))
        return f"body{' (chunked)' if req.chunked else ''}: {req.body[:40]!r}"

    def _bad_chunks(self, req: _Request, control: bool) -> str:
        r = self.rng
        broken = [b"zz\r\nabc\r\n0\r\n\r\n", b"5\r\nab\r\n0\r\n\r\n", b"3\r\nabcdef\r\n0\r\n\r\n",
                  b"-1\r\n\r\n", b"3\nabc\n0\n\n", b"ffffffffffffffffffff\r\n", b"3;" + b"e" * 9000 + b"\r\nabc\r\n",
                  b"3\r\nabc", b"1000\r\n" + b"a" * 10, b"2\r\n{}\r\n", b"0\r\nX-Trailer\r\n\r\n"]
        req.framing = False
        req.headers = [h for h in req.headers if h[0].lower() != b"content-length"]
        req.headers.append((b"Transfer-Encoding", b"chunked"))
        req.body = r.choice(broken)
        return f"chunks: {req.body[:30]!r}"

    # --- cases --------------------------------------------------------------------------------------
    def case(self) -> Case:
        r = self.rng
        roll = r.random()
        if roll < 0.04:
            garbage = bytes(r.randrange(256) for _ in range(r.randint(1, 2000)))
            return Case(garbage, ["random bytes"])
        if roll < 0.06:  # a TLS ClientHello, as a client that got the scheme wrong sends
            return Case(bytes.fromhex("16030100a5010000a10303") + bytes(r.randrange(256) for _ in range(64)),
                        ["TLS handshake"])
        req, control = self._base()
        self._decorate(req)
        fatal: list[Callable[[_Request, bool], str]] = [self._bad_method, self._bad_path, self._bad_version,
                                                         self._bad_header]
        if control:
            fatal += [self._bad_auth, self._bad_auth, self._bad_body, self._bad_body, self._bad_chunks]
        defects = [r.choice(fatal)(req, control) for _ in range(r.choices([1, 2, 3], [6, 3, 1])[0])]
        data = req.encode()
        if r.random() < 0.12:  # cut short: the client goes away mid-request
            data = data[:r.randrange(len(data))]
            defects.append(f"truncated at {len(data)}")
        return Case(data, defects)

    def cases(self, n: int) -> list[Case]:
        return [self.case() for _ in range(n)]


def exchange(port: int, data: bytes, timeout: float = 10.0) -> bytes:
    """Send `data`, half-close (so the server sees the end of what we had to say), read the whole
    answer. A connection reset by the server counts as closed (what was read so far is returned)."""
    out = b""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        try:
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # the server answered and closed before we were done
        while True:
            try:
                chunk = sock.recv(65536)
            except (ConnectionResetError, BrokenPipeError):
                break
            if not chunk:
                break
            out += chunk
    return out
