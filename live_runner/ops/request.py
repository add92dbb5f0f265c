"""Reading one bounded HTTP/1.1 request for the ops server, parsed by h11.

Why h11: hand-parsing HTTP is where the ops server went wrong (a non-ASCII token crashed it, a
chunked body was silently dropped). h11 is a maintained, strict, sans-I/O HTTP/1.1 parser (the
one under httpx and uvicorn): it refuses what RFC 9112 refuses (bad request lines, header syntax,
conflicting lengths, broken chunked framing, unknown transfer codings) and decodes chunked bodies.
It does no I/O, so the bounds stay ours, on the runner's loop: header bytes
(`max_incomplete_event_size`), body bytes (Content-Length checked before reading, chunked bodies
counted while reading), and the caller's deadline for the whole request.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import h11

MAX_HEADER_BYTES = 8192
READ_SIZE = 16384


class HttpError(Exception):
    """A request refused with a 4xx (or 503) JSON answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class ClientGone(Exception):
    """The client closed the connection before it sent a whole request: nothing to answer."""


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    headers: list[tuple[bytes, bytes]]  # names lower-cased, values as sent (bytes)
    body: bytes

    def header_values(self, name: bytes) -> list[bytes]:
        return [v for k, v in self.headers if k == name]


async def read_request(reader: asyncio.StreamReader, max_body: int) -> Request:
    """One request from `reader`; HttpError for anything malformed or too large, ClientGone when
    the client left early. The caller bounds the time this may take."""
    conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEADER_BYTES)
    head: h11.Request | None = None
    body = bytearray()
    received = 0
    eof = False
    while True:
        try:
            event = conn.next_event()
        except h11.RemoteProtocolError as exc:
            raise _refusal(exc, eof=eof) from None
        if event is h11.NEED_DATA:
            # Until the head is parsed, never hand h11 more than one byte over the bound: it
            # enforces max_incomplete_event_size only on a head it has not seen the end of.
            want = READ_SIZE if head is not None else MAX_HEADER_BYTES + 1 - received
            data = await reader.read(max(want, 1))
            if not data and head is None and not received:
                raise ClientGone()  # connected and left without a byte of request
            received += len(data)
            eof = not data
            conn.receive_data(data)
        elif isinstance(event, h11.Request):
            head = event
            _check_head(event, max_body)
        elif isinstance(event, h11.Data):
            body += event.data
            if len(body) > max_body:
                raise HttpError(413, f"body larger than {max_body} bytes")
        elif isinstance(event, h11.EndOfMessage):
            assert head is not None
            target = head.target.decode("ascii")  # h11 admits visible ASCII only
            return Request(head.method.decode("ascii"), target.split("?", 1)[0],
                           [(k, v) for k, v in head.headers], bytes(body))
        else:  # ConnectionClosed before a request, or PAUSED (cannot happen before a response)
            raise ClientGone()


def _check_head(req: h11.Request, max_body: int) -> None:
    if req.http_version not in (b"1.0", b"1.1"):
        raise HttpError(400, f"unsupported HTTP version {req.http_version.decode('ascii')!r}")
    names = [k for k, _ in req.headers]
    if b"transfer-encoding" in names and b"content-length" in names:
        raise HttpError(400, "both Transfer-Encoding and Content-Length")
    for k, v in req.headers:
        if k == b"content-length" and int(v) > max_body:  # h11 checked it is digits
            raise HttpError(413, f"body larger than {max_body} bytes")


def _refusal(exc: h11.RemoteProtocolError, eof: bool) -> HttpError:
    if exc.error_status_hint == 431:
        return HttpError(431, "request headers too large")
    if eof:  # the client half-closed (or left) mid-request; answered in case it still reads
        return HttpError(400, "incomplete request")
    # h11 hints 501 for transfer codings other than chunked: still the client's mistake here
    return HttpError(400, f"malformed request: {str(exc)[:200]}")
