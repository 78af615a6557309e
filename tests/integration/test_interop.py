"""Interoperability with a real, independent client: python3-websockets (Debian, 10.x,
asyncio API). It checks our handshake, framing and close handshake from its side."""

import asyncio
import base64
import hashlib

import pytest
import websockets  # Debian python3-websockets: run under /usr/bin/python3
import websockets.exceptions

import harness
from harness import SLOW
from wsplice_testlib import MIB, start_gateway

TIMEOUT = 20 * SLOW


def uri(gw, path="/"):
    return "ws://127.0.0.1:%d%s" % (gw.port, path)


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, TIMEOUT))


async def recv_bytes(ws, n):
    """Collect n bytes of echo: the gateway frames the backend's bytes as they come, so one
    message sent may return as several."""
    out = bytearray()
    while len(out) < n:
        m = await ws.recv()
        assert isinstance(m, bytes), "expected binary messages, got %r" % type(m)
        out += m
    assert len(out) == n
    return bytes(out)


def test_websockets_client_handshake_without_subprotocol(gw_echo):
    async def main():
        async with websockets.connect(uri(gw_echo)) as ws:
            assert ws.subprotocol is None
            await ws.send(b"ping?")
            assert await recv_bytes(ws, 5) == b"ping?"

    run(main())


@pytest.mark.parametrize(
    "offer,chosen", [(["binary"], "binary"), (["base64"], "base64"), (["chat", "binary"], "binary")]
)
def test_websockets_client_subprotocol_negotiation(gw_echo, offer, chosen):
    async def main():
        async with websockets.connect(uri(gw_echo), subprotocols=offer) as ws:
            return ws.subprotocol

    assert run(main()) == chosen


def test_websockets_client_binary_and_text_echo(gw_echo):
    async def main():
        async with websockets.connect(uri(gw_echo), subprotocols=["binary"]) as ws:
            await ws.send(bytes(range(256)))
            assert await recv_bytes(ws, 256) == bytes(range(256))
            text = "héllo wörld € 𝄞"
            await ws.send(text)  # text in, raw UTF-8 to the backend, binary back
            assert await recv_bytes(ws, len(text.encode())) == text.encode()
            await ws.send([b"frag", b"mented", b""])  # a fragmented message
            assert await recv_bytes(ws, 10) == b"fragmented"

    run(main())


def test_websockets_client_base64_subprotocol_round_trip(gw_echo):
    raw = harness.seeded_bytes(100000, 301)

    async def main():
        async with websockets.connect(uri(gw_echo), subprotocols=["base64"]) as ws:
            assert ws.subprotocol == "base64"
            await ws.send(base64.b64encode(raw).decode())
            out = bytearray()
            while len(out) < len(raw):
                m = await ws.recv()
                assert isinstance(m, str), "base64 data must come as text"
                out += base64.b64decode(m, validate=True)
            assert bytes(out) == raw

    run(main())


def test_websockets_client_ping_gets_pong(gw_echo):
    async def main():
        async with websockets.connect(uri(gw_echo)) as ws:
            for payload in [b"", b"x", b"p" * 125]:
                waiter = await ws.ping(payload)
                await asyncio.wait_for(waiter, 5 * SLOW)
            await ws.send(b"after pings")
            assert await recv_bytes(ws, 11) == b"after pings"

    run(main())


def test_websockets_client_16mib_message(gw_echo):
    data = harness.seeded_bytes(16 * MIB, 302)

    async def main():
        async with websockets.connect(uri(gw_echo), max_size=None) as ws:
            # Receive while sending: the echo comes back as many messages, and websockets
            # stops reading once max_queue of them wait, which would stall our own send.
            _, got = await asyncio.gather(ws.send(data), recv_bytes(ws, len(data)))
            assert hashlib.sha256(got).digest() == hashlib.sha256(data).digest()

    run(main())


def test_websockets_client_close_1000(gw_echo):
    async def main():
        ws = await websockets.connect(uri(gw_echo))
        await ws.send(b"bye")
        assert await recv_bytes(ws, 3) == b"bye"
        await ws.close(code=1000, reason="done")
        return ws

    ws = run(main())
    assert ws.close_code == 1000
    gw_echo.wait_log(r"close .*code=1000 by=client")


def test_websockets_client_sees_close_1000_when_backend_closes(gw_factory, cleanup):
    size = 300000
    src = harness.SourceBackend(size, seed=303, end="close")
    cleanup.append(src)
    gw = start_gateway(gw_factory, src.port)

    async def main():
        async with websockets.connect(uri(gw)) as ws:
            out = bytearray()
            with pytest.raises(websockets.exceptions.ConnectionClosedOK):
                while True:
                    out += await ws.recv()
            return ws, bytes(out)

    ws, data = run(main())
    assert data == harness.seeded_bytes(size, 303)
    assert ws.close_code == 1000


def test_50_concurrent_websockets_clients_each_get_their_own_echo(gw_factory, cleanup):
    echo = harness.EchoBackend(backlog=256)
    cleanup.append(echo)
    gw = start_gateway(gw_factory, echo.port)

    async def one(i):
        data = harness.seeded_bytes(1000 + 997 * i, 400 + i) + b"#%d" % i
        async with websockets.connect(uri(gw), subprotocols=["binary"]) as ws:
            await ws.send(data)
            got = await recv_bytes(ws, len(data))
        return got == data and ws.close_code == 1000

    async def main():
        return await asyncio.gather(*(one(i) for i in range(50)))

    results = run(main())
    assert results == [True] * 50
