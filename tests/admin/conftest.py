from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from mailpost.bus import LocalBus
from mailpost.store import open_store
from mailpost.store.interface import MailStore


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[MailStore]:
    """A fresh store in a temporary directory, closed after the test."""
    opened = await open_store(tmp_path / "data", LocalBus())
    try:
        yield opened
    finally:
        await opened.close()
