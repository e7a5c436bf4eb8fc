"""The load generator's keep-alive pool against a loopback HTTP server."""

import asyncio

import bench.httpload as httpload
from bench.httpload import HttpLoadClient


async def test_a_connection_idle_past_the_limit_is_replaced_not_reused(monkeypatch):
    accepted = 0

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal accepted
        accepted += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    int(line.split(b":")[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length")
                )
                await reader.readexactly(length)
                writer.write(b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok")
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = HttpLoadClient(f"http://127.0.0.1:{port}")
    try:
        assert await client.post_json("/x", b"{}") == (201, b"ok")
        assert await client.post_json("/x", b"{}") == (201, b"ok")
        assert accepted == 1  # kept alive and reused
        monkeypatch.setattr(httpload, "MAX_IDLE_S", 0.0)  # now every idle one is too old
        assert await client.post_json("/x", b"{}") == (201, b"ok")
        assert accepted == 2
    finally:
        await client.close()
        server.close()
        await server.wait_closed()
