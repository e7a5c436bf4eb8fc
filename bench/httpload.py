"""A minimal HTTP/1.1 keep-alive client for the load generator.

The benchmark's load generator runs on the same two cores as what it measures, so whatever it
spends per request is taken from the system under test. aiohttp's client costs about 0.25 ms of
CPU per request here; this one writes a prepared request and reads a status line, headers and a
`content-length` body, and nothing else (no redirects, cookies, chunked bodies or TLS): what a
benchmark against our own services needs.
"""

from __future__ import annotations

import asyncio
import time
from urllib.parse import urlsplit


class HttpLoadError(Exception):
    pass


MAX_IDLE_S = 30.0  # under the server's keep-alive (75 s, `optisync_common.http.serve`)


class _Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.idle_since = time.monotonic()

    async def exchange(self, request: bytes) -> tuple[int, bytes]:
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status = int(lines[0].split(b" ", 2)[1])
        length = None
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
            elif name.strip().lower() == b"transfer-encoding":
                raise HttpLoadError("chunked responses are not supported")
        if length is None:
            raise HttpLoadError("response without content-length")
        return status, await self.reader.readexactly(length)

    def close(self) -> None:
        self.writer.close()


class HttpLoadClient:
    """POSTs JSON to one origin over a pool of up to `limit` kept-alive connections."""

    def __init__(self, base_url: str, limit: int = 512) -> None:
        parts = urlsplit(base_url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80
        self.limit = asyncio.Semaphore(limit)
        self._idle: list[_Connection] = []

    async def post_json(
        self, path: str, body: bytes, headers: dict[str, str] | None = None
    ) -> tuple[int, bytes]:
        extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        request = (
            f"POST {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n{extra}\r\n"
        ).encode() + body
        async with self.limit:
            connection = self._take_idle() or await self._connect()
            try:
                answer = await connection.exchange(request)
            except BaseException:
                connection.close()  # its state is unknown: never reuse it
                raise
            connection.idle_since = time.monotonic()
            self._idle.append(connection)
            return answer

    def _take_idle(self) -> _Connection | None:
        """The most recently used idle connection. The pool hands out the newest first, so
        in a long step a connection at its bottom can sit idle until the server closes it,
        and a request on it would fail: such connections are closed here instead."""
        while self._idle:
            connection = self._idle.pop()
            if time.monotonic() - connection.idle_since < MAX_IDLE_S:
                return connection
            connection.close()
        return None

    async def _connect(self) -> _Connection:
        reader, writer = await asyncio.open_connection(self.host, self.port)
        return _Connection(reader, writer)

    async def close(self) -> None:
        for connection in self._idle:
            connection.close()
        self._idle.clear()
