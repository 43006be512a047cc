"""The change doorbell between processes: the datagram format, the relaying bus, the listener."""

from __future__ import annotations

import asyncio
import stat
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from mailpost import doorbell
from mailpost.bus import Change, ChangeKind, LocalBus

CHANGES = st.builds(
    Change,
    account_id=st.integers(min_value=0, max_value=2**40),
    mailbox_id=st.none() | st.integers(min_value=0, max_value=2**40),
    modseq=st.integers(min_value=0, max_value=2**62),
    kind=st.sampled_from(list(ChangeKind)),
    mailbox_name=st.none() | st.text(max_size=60),
)


@given(CHANGES)
def test_a_change_survives_the_datagram(change: Change) -> None:
    data = doorbell.encode(change)
    assert len(data) <= doorbell.MAX_DATAGRAM
    assert doorbell.decode(data) == change


@given(st.binary(max_size=200))
def test_garbage_is_ignored_not_raised(data: bytes) -> None:
    result = doorbell.decode(data)
    assert result is None or isinstance(result, Change)


def test_records_of_the_wrong_shape_are_refused() -> None:
    for data in (b"[1,2,3,\"new\"]", b"[1,2,3,\"gone\",null]", b"[true,2,3,\"new\",null]",
                 b"[-1,2,3,\"new\",null]", b"[1,\"2\",3,\"new\",null]", b"{}",
                 b"[1,2,3,\"new\",7]", b"\xff"):
        assert doorbell.decode(data) is None, data


async def relayed(data_dir: Path, change: Change) -> Change | None:
    """Publish ``change`` on a RelayingBus; return what the listening bus received."""
    server_bus = LocalBus()
    listener = doorbell.listen(data_dir, server_bus)
    try:
        with server_bus.subscribe(change.account_id) as subscription:
            sender = doorbell.RelayingBus(data_dir)
            try:
                sender.publish(change)
            finally:
                sender.close()
            changes, _ = await asyncio.wait_for(subscription.wait(), 5)
            return changes[0] if changes else None
    finally:
        listener.close()


async def test_a_published_change_reaches_the_server_bus(tmp_path: Path) -> None:
    change = Change(7, 3, 42, ChangeKind.MESSAGE_NEW, "INBOX")
    assert await relayed(tmp_path, change) == change
    mode = stat.S_IMODE((tmp_path / doorbell.SOCKET_NAME).stat().st_mode)
    assert mode == 0o600


async def test_a_deep_data_directory_still_works(tmp_path: Path) -> None:
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    deep.mkdir(parents=True)
    assert len(str(deep / doorbell.SOCKET_NAME)) > 108
    change = Change(1, 2, 3, ChangeKind.FLAGS, "Archive/2026")
    assert await relayed(deep, change) == change


async def test_a_stale_socket_is_replaced_and_no_server_is_fine(tmp_path: Path) -> None:
    listener = doorbell.listen(tmp_path, LocalBus())
    listener.close()  # leaves the file behind, as a killed server would
    sender = doorbell.RelayingBus(tmp_path)
    sender.publish(Change(1, 1, 1, ChangeKind.MESSAGE_NEW))  # nobody listens: no error
    sender.close()
    assert await relayed(tmp_path, Change(1, 1, 2, ChangeKind.EXPUNGE)) is not None
