"""Every message of the shared real-world corpus parses, renders and slices consistently."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailpost.mime import parse_message
from tests.mime import CORPUS as CORPUS_DIR
from tests.mime.treecheck import check_everything

CORPUS = CORPUS_DIR
MESSAGES = sorted(CORPUS.glob("*.eml")) if CORPUS.is_dir() else []


def test_the_corpus_is_there() -> None:
    assert len(MESSAGES) == 246


@pytest.mark.parametrize("path", MESSAGES, ids=lambda path: path.name)
def test_corpus_message(path: Path) -> None:
    data = path.read_bytes()
    check_everything(data, parse_message(data))


@pytest.mark.parametrize("path", MESSAGES, ids=lambda path: path.name)
def test_corpus_message_with_crlf(path: Path) -> None:
    # Most corpus files use bare LF; stored messages are CRLF.
    data = path.read_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    check_everything(data, parse_message(data))
