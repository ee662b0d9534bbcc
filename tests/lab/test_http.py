"""
A node's HTTP, in-process: keep-alive, pipelining, ``Connection: close``, HTTP/1.0, HEAD,
``/__stats``, bad requests, a client gone before its answer (logged 499), and a clean close.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from bench.lab.node import log_path, serve_pool
from bench.lab.pool import Pool
from tests.lab.conftest import run_async

POOL = Pool.model_validate(
    {
        "name": "http",
        "service": "fixed",
        "seed": 1,
        "nodes": [
            {"name": "h1", "address": "127.0.0.7", "port": 0, "slots": 1, "service_ms": 20},
            {"name": "h2", "address": "127.0.0.8", "port": 0, "slots": 2, "service_ms": 50},
        ],
    }
)


async def _response(
    reader: asyncio.StreamReader, *, head_only: bool = False
) -> tuple[bytes, dict[bytes, bytes], bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head[:-4].split(b"\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        headers[name.strip().lower()] = value.strip()
    if head_only:
        return lines[0], headers, b""
    body = await reader.readexactly(int(headers.get(b"content-length", b"0")))
    return lines[0], headers, body


async def _exchange(log_dir: Path) -> dict[str, Any]:
    out: dict[str, Any] = {}
    async with serve_pool(POOL, log_dir) as running:
        host, port = running.addresses["h1"]
        reader, writer = await asyncio.open_connection(host, port)
        # three pipelined requests on one keep-alive connection, answered in order
        writer.write(
            b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n"
            b"POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"
            b"GET /__stats HTTP/1.1\r\nHost: x\r\n\r\n"
        )
        out["first"] = await _response(reader)
        out["second"] = await _response(reader)
        out["stats"] = await _response(reader)
        writer.write(b"HEAD / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        status, headers, _ = await _response(reader, head_only=True)
        out["head"] = (status, headers, await reader.read())  # then closed
        writer.close()

        reader, writer = await asyncio.open_connection(host, port)
        writer.write(b"GET / HTTP/1.0\r\n\r\n")  # HTTP/1.0: closed after the answer
        out["http10"] = await _response(reader), await reader.read()
        writer.close()

        reader, writer = await asyncio.open_connection(host, port)
        writer.write(b"NONSENSE\r\n\r\n")
        out["bad"] = await reader.read()
        writer.close()

        h2 = running.addresses["h2"]
        reader, writer = await asyncio.open_connection(*h2)
        writer.write(b"GET /gone HTTP/1.1\r\nHost: x\r\n\r\n")
        await writer.drain()
        writer.close()  # gone before the 50 ms service ends
        await asyncio.sleep(0.15)
        out["h2"] = running.stats()["h2"]
        out["h1"] = running.stats()["h1"]
        # a request in service when the pool closes is let finish
        reader, writer = await asyncio.open_connection(*h2)
        writer.write(b"GET /last HTTP/1.1\r\nHost: x\r\n\r\n")
        await writer.drain()
        await asyncio.sleep(0.01)
    out["last"] = await reader.read()
    out["closed_stats"] = running.stats()
    return out


def test_node_http(tmp_path: Path) -> None:
    out = run_async(_exchange(tmp_path))
    first, second = out["first"], out["second"]
    assert first == (b"HTTP/1.1 200 OK", first[1], b"ok\n")
    assert first[1][b"x-node"] == b"h1"
    assert second[2] == b"ok\n"
    stats = json.loads(out["stats"][2])
    assert stats["node"] == "h1"
    assert stats["served"] == 2
    assert stats["slots"] == 1
    head_status, head_headers, rest = out["head"]
    assert head_status == b"HTTP/1.1 200 OK"
    assert head_headers[b"connection"] == b"close"
    assert rest == b""
    (status10, _, body10), rest10 = out["http10"]
    assert (status10, body10, rest10) == (b"HTTP/1.1 200 OK", b"ok\n", b"")
    assert out["bad"].startswith(b"HTTP/1.1 400 ")
    assert out["h1"]["served"] == 4
    assert out["h2"]["served"] == 1
    assert out["last"].endswith(b"ok\n")
    assert out["closed_stats"]["h2"]["served"] == 2

    h1 = log_path(tmp_path, "h1").read_text().splitlines()
    assert len(h1) == 4
    assert [line.split('"')[1] for line in h1] == [
        "GET /a HTTP/1.1",
        "POST /b HTTP/1.1",
        "HEAD / HTTP/1.1",
        "GET / HTTP/1.0",
    ]
    assert h1[2].split('"')[2].split()[:2] == ["200", "0"]  # HEAD: no body bytes
    h2 = log_path(tmp_path, "h2").read_text().splitlines()
    assert h2[0].split('"')[1] == "GET /gone HTTP/1.1"
    assert h2[0].split('"')[2].split()[:2] == ["499", "0"]  # the client had gone
    assert float(h2[0].split()[-2]) >= 0.049
    assert h2[1].split('"')[2].split()[0] == "200"
