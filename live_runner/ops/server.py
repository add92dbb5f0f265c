"""The operating surface: one small HTTP/1.1 server on the runner's event loop.

GET /health, /ready, /metrics, /status; POST /control/{pause,resume,emergency_stop,rebalance,
flatten} and /control/flatten/{symbol}, with a bearer token. Built on asyncio streams so it shares
the loop with the chain (commands never race a bar) and so every request is bounded: header and
body size, the time a client may take to send them, and the number of clients at once. Requests
are parsed by h11 (`ops_request`); anything malformed gets a 4xx JSON answer, never a 500 (a 500
counts in trading_system_errors_total and pages). The token is compared as bytes in constant time.
One request per connection (`Connection: close`).

A command is applied at once (between two bars, so the journal's order is the order things
happened) and answered 200 only after its journal event is committed durably (`commit_command`
awaits the journal writer, the loop keeps turning). If the journal cannot commit in time, the
answer is 503 with `"applied": true, "durable": false`: the command took effect in this process
(an emergency stop is never held back by a slow database) but a crash now would lose it.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
from typing import Any, Protocol

from live_runner.ops.request import MAX_HEADER_BYTES, ClientGone, HttpError, Request, read_request

log = logging.getLogger("live_runner.ops")

__all__ = ["MAX_HEADER_BYTES", "HttpError", "OpsApp", "OpsServer"]

MAX_CONNECTIONS = 128  # concurrent clients; more are answered 503 at once (slow-client floods)
REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found",
           405: "Method Not Allowed", 408: "Request Timeout", 413: "Payload Too Large",
           431: "Request Header Fields Too Large", 500: "Internal Server Error",
           503: "Service Unavailable"}


class OpsApp(Protocol):
    def health_check(self) -> tuple[bool, dict[str, Any]]: ...

    def readiness(self) -> tuple[bool, dict[str, Any]]: ...

    def status(self) -> dict[str, Any]: ...

    def metrics_text(self) -> bytes: ...

    def control(self, command: str, symbol: str = "", source: str = "http") -> dict[str, Any]: ...

    async def commit_command(self, result: dict[str, Any]) -> str | None: ...


class OpsServer:
    def __init__(self, app: OpsApp, host: str, port: int, token: str | None, *,
                 max_body: int = 4096, timeout_s: float = 5.0,
                 max_connections: int = MAX_CONNECTIONS) -> None:
        self.app = app
        self.host = host
        self.port = port
        self.token = token
        self._token = token.encode("utf-8") if token else b""
        self.max_body = max_body
        self.timeout_s = timeout_s
        self.max_connections = max_connections
        self._server: asyncio.base_events.Server | None = None
        self.requests = 0
        self.rejected = 0
        self.active = 0
        self.turned_away = 0
        self.errors: dict[str, int] = {}  # 500s by exception type (trading_system_errors_total)

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._handle, self.host, self.port,
                                                  limit=MAX_HEADER_BYTES, backlog=512)
        return self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.active >= self.max_connections:
            # Too many clients at once (most likely slow ones holding their sockets): refuse now
            # rather than queue, so a flood costs a socket for microseconds, not timeout_s.
            self.turned_away += 1
            self.requests += 1
            self.rejected += 1
            status, body, ctype = _json(503, {"error": "too many connections"})
            try:
                writer.write(_head(status, ctype, len(body)) + body)
                await asyncio.wait_for(writer.drain(), 1.0)
            except (ConnectionError, asyncio.TimeoutError):
                pass
            finally:
                writer.close()
            return
        self.active += 1
        try:
            await self._serve(reader, writer)
        finally:
            self.active -= 1

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            status, body, ctype = await self._respond(reader, writer)
        except asyncio.TimeoutError:
            status, body, ctype = _json(408, {"error": "request timeout"})
        except HttpError as exc:
            status, body, ctype = _json(exc.status, {"error": exc.message})
        except (ConnectionError, ClientGone):
            writer.close()
            return
        except Exception as exc:  # never let one request take the loop down
            log.exception("ops request failed")
            self.errors[type(exc).__name__] = self.errors.get(type(exc).__name__, 0) + 1
            status, body, ctype = _json(500, {"error": f"internal error: {type(exc).__name__}"})
        self.requests += 1
        if status >= 400:
            self.rejected += 1
        try:
            writer.write(_head(status, ctype, len(body)) + body)
            await asyncio.wait_for(writer.drain(), self.timeout_s)
        except (ConnectionError, asyncio.TimeoutError):
            pass
        finally:
            writer.close()

    async def _respond(self, reader: asyncio.StreamReader,
                       writer: asyncio.StreamWriter) -> tuple[int, bytes, str]:
        request = await asyncio.wait_for(read_request(reader, self.max_body), self.timeout_s)
        # Routing is outside the client's time limit: a command's commit has its own bound.
        return await self._route(request, writer)

    async def _route(self, request: Request, writer: asyncio.StreamWriter) -> tuple[int, bytes, str]:
        app = self.app
        method, path = request.method, request.path
        if path in ("/health", "/ready", "/metrics", "/status"):
            if method != "GET":
                raise HttpError(405, f"{path} takes GET")
            if path == "/health":
                ok, data = app.health_check()
                return _json(200 if ok else 503, data)
            if path == "/ready":
                ok, data = app.readiness()
                return _json(200 if ok else 503, data)
            if path == "/metrics":
                return 200, app.metrics_text(), "text/plain; version=0.0.4; charset=utf-8"
            return _json(200, app.status())
        if path.startswith("/control/"):
            if method != "POST":
                raise HttpError(405, "control endpoints take POST")
            self._authorize(request.header_values(b"authorization"))
            parts = path[len("/control/"):].strip("/").split("/")
            command, symbol = parts[0], ""
            if len(parts) == 2 and command == "flatten":
                symbol = parts[1].upper()
                if not symbol.replace(".", "").replace("-", "").isalnum() or len(symbol) > 10:
                    raise HttpError(400, f"bad symbol {parts[1]!r}")
            elif len(parts) != 1:
                raise HttpError(404, f"unknown command {'/'.join(parts)!r}")
            source = self._source(request.body, writer)
            try:
                result = app.control(command, symbol=symbol, source=source)
            except KeyError:
                raise HttpError(404, f"unknown command {command!r}") from None
            problem = await app.commit_command(result)
            if problem is not None:
                return _json(503, {"ok": False, "applied": True, "durable": False,
                                   "error": problem, **result})
            return _json(200, {"ok": True, "durable": True, **result})
        raise HttpError(404, f"no such endpoint {path!r}")

    def _authorize(self, values: list[bytes]) -> None:
        """Exactly one `Authorization: Bearer <token>`; compared as bytes in constant time, so
        any byte a client sends is a wrong token (401), never an error."""
        if not self._token:
            raise HttpError(401, "control is disabled: no token configured on the runner")
        if len(values) != 1:
            raise HttpError(401, "missing or wrong bearer token" if not values
                            else "more than one Authorization header")
        scheme, _, given = values[0].partition(b" ")
        if scheme.lower() != b"bearer" or not hmac.compare_digest(given.strip(b" \t"), self._token):
            raise HttpError(401, "missing or wrong bearer token")

    @staticmethod
    def _source(body: bytes, writer: asyncio.StreamWriter) -> str:
        """Who sent the command (journaled): the body's "operator" field, else the peer."""
        peer = writer.get_extra_info("peername")
        who = f"http:{peer[0]}" if peer else "http"
        if body:
            try:
                data = json.loads(body.decode("utf-8"))  # strict: no lone surrogates, no BOM
            except ValueError:
                raise HttpError(400, "body is not JSON (UTF-8)") from None
            if not isinstance(data, dict):
                raise HttpError(400, "body must be a JSON object")
            operator = data.get("operator")
            if operator is not None:
                if not isinstance(operator, str) or not 0 < len(operator) <= 64 \
                        or not operator.isprintable():
                    raise HttpError(400, "operator must be a string of 1-64 printable characters")
                who = f"{who}:{operator}"
        return who


def _head(status: int, ctype: str, length: int) -> bytes:
    return (f"HTTP/1.1 {status} {REASONS.get(status, 'Error')}\r\nContent-Type: {ctype}\r\n"
            f"Content-Length: {length}\r\nConnection: close\r\n"
            "Cache-Control: no-store\r\n\r\n").encode()


def _json(status: int, data: dict[str, Any]) -> tuple[int, bytes, str]:
    return status, json.dumps(data, sort_keys=True, default=str).encode(), "application/json"
