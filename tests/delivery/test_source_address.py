"""``[delivery] source_address``: parsed and checked, and outbound connections come from it."""

from __future__ import annotations

import asyncio

import pytest

from mailpost.config import ConfigError, from_mapping
from mailpost.delivery.mx import Destination
from mailpost.delivery.outbound import SessionError, Transaction, send
from mailpost.store.types import OutboundRecipient


def test_source_address_parsed_and_checked() -> None:
    assert from_mapping({}).delivery.source_address is None
    config = from_mapping({"delivery": {"source_address": "127.0.0.5"}})
    assert config.delivery.source_address == "127.0.0.5"
    with pytest.raises(ConfigError, match="delivery.source_address"):
        from_mapping({"delivery": {"source_address": "mail.example.test"}})


async def test_connection_comes_from_source_address() -> None:
    peers: list[str] = []

    async def refuse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peers.append(writer.get_extra_info("peername")[0])
        writer.write(b"554 5.7.1 not you\r\n")  # enough to see who connected
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(refuse, "127.0.0.1", 0)
    port = int(server.sockets[0].getsockname()[1])
    transaction = Transaction("a@example.test", (OutboundRecipient("b@remote.test"),), b"x\r\n")
    try:
        with pytest.raises(SessionError, match="greeting: 554"):
            await send(Destination("127.0.0.1", port, "remote.test"), transaction,
                       "mail.example.test", timeout=5, source_address="127.0.0.5")
    finally:
        server.close()
        await server.wait_closed()
    assert peers == ["127.0.0.5"]
