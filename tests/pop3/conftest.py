from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.harness import ServerThread, make_config
from tests.pop3.clients import ALICE, BOB


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerThread]:
    with ServerThread(make_config(tmp_path / "var")) as running:
        running.add_user(ALICE)
        running.add_user(BOB)
        yield running
