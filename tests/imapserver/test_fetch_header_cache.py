"""Header fields of a message already parsed come from the message cache, not the store."""

from __future__ import annotations

import pytest

from mailpost.imap.handlers.fetch_cache import MESSAGE_CACHE
from tests.e2e.harness import ServerThread
from tests.imapserver.helpers import RawIMAP, deliver

MESSAGE = b"From: carol@remote.test\r\nSubject: cached\r\n\r\nbody\r\n"


def test_second_header_fetch_reads_nothing_from_the_store(
        server: ServerThread, monkeypatch: pytest.MonkeyPatch) -> None:
    MESSAGE_CACHE.clear()
    deliver(server, "alice@example.test", MESSAGE)
    client = RawIMAP(server)
    client.login()
    client.ok("SELECT INBOX")
    first = client.ok("FETCH 1 (BODYSTRUCTURE BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    reads: list[object] = []
    blobs = server.store.blobs
    real_read = blobs.read

    async def counting_read(*args: object, **kwargs: object) -> bytes:
        reads.append(args)
        return await real_read(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(blobs, "read", counting_read)
    second = client.ok("FETCH 1 (BODYSTRUCTURE BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    assert second == first and b"Subject: cached" in second[0]
    assert reads == []
