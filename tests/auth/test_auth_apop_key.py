"""The server key that seals APOP secrets: sealing, and the ``apop.key`` file."""

from __future__ import annotations

import os
import stat
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from mailpost.auth import apop_key
from mailpost.auth.apop_key import KEY_FILE, APOPKey, APOPKeyError, load_or_create_key

ALICE = "alice@example.test"


@pytest.fixture
def key() -> APOPKey:
    return APOPKey(os.urandom(32))


# --- sealing -----------------------------------------------------------------------------------


def test_seal_and_open_round_trip(key: APOPKey) -> None:
    sealed = key.seal(ALICE, "correct horse ☃")
    assert b"correct horse" not in sealed
    assert key.open(ALICE, sealed) == "correct horse ☃"


def test_the_address_is_bound_case_insensitively(key: APOPKey) -> None:
    sealed = key.seal(ALICE, "pw")
    assert key.open("Alice@Example.TEST", sealed) == "pw"
    assert key.open("bob@example.test", sealed) is None


def test_every_seal_uses_a_fresh_nonce(key: APOPKey) -> None:
    assert key.seal(ALICE, "pw") != key.seal(ALICE, "pw")


def test_another_key_cannot_open(key: APOPKey) -> None:
    assert APOPKey(os.urandom(32)).open(ALICE, key.seal(ALICE, "pw")) is None


@pytest.mark.parametrize("damage", [
    lambda sealed: sealed[:-1] + bytes([sealed[-1] ^ 1]),  # tag
    lambda sealed: sealed[:20] + bytes([sealed[20] ^ 1]) + sealed[21:],  # ciphertext
    lambda sealed: b"\x02" + sealed[1:],  # unknown version
    lambda sealed: sealed[:10],  # truncated
    lambda sealed: b"",
])
def test_damaged_secrets_do_not_open(key: APOPKey, damage: Callable[[bytes], bytes]) -> None:
    assert key.open(ALICE, damage(key.seal(ALICE, "pw"))) is None


def test_a_key_has_32_octets() -> None:
    with pytest.raises(ValueError):
        APOPKey(b"short")


# --- the key file ------------------------------------------------------------------------------


def test_key_file_is_created_owner_only_and_reused(tmp_path: Path) -> None:
    first = APOPKey.for_data_dir(tmp_path)
    path = tmp_path / KEY_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(path.read_bytes()) == 32
    second = APOPKey.for_data_dir(tmp_path)
    assert second.open(ALICE, first.seal(ALICE, "pw")) == "pw"
    assert sorted(p.name for p in tmp_path.iterdir()) == [KEY_FILE]  # no temporary left


def test_a_key_created_meanwhile_by_another_process_wins(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / KEY_FILE
    winner = os.urandom(32)
    real_read = apop_key._read_key
    calls = 0

    def racing_read(target: Path) -> bytes:
        nonlocal calls
        calls += 1
        if calls == 1:  # our first look finds nothing; the other process then writes its key
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            os.write(fd, winner)
            os.close(fd)
            raise FileNotFoundError(target)
        return real_read(target)

    monkeypatch.setattr(apop_key, "_read_key", racing_read)
    assert load_or_create_key(path) == winner
    assert path.read_bytes() == winner
    assert sorted(p.name for p in tmp_path.iterdir()) == [KEY_FILE]


def test_concurrent_first_uses_agree_on_one_key(tmp_path: Path) -> None:
    path = tmp_path / KEY_FILE
    results: list[bytes] = []
    threads = [threading.Thread(target=lambda: results.append(load_or_create_key(path)))
               for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 8 and len(set(results)) == 1
    assert results[0] == path.read_bytes()


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
def test_a_key_file_others_can_read_is_refused(tmp_path: Path) -> None:
    APOPKey.for_data_dir(tmp_path)
    (tmp_path / KEY_FILE).chmod(0o640)
    with pytest.raises(APOPKeyError, match="readable by its owner only"):
        APOPKey.for_data_dir(tmp_path)


@pytest.mark.parametrize("content", [b"", b"x" * 31, b"x" * 33])
def test_a_key_file_of_the_wrong_size_is_refused(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / KEY_FILE
    path.write_bytes(content)
    path.chmod(0o600)
    with pytest.raises(APOPKeyError, match="32-octet key"):
        APOPKey.for_data_dir(tmp_path)
    assert path.read_bytes() == content  # never overwritten: sealed secrets depend on it


def test_a_directory_in_place_of_the_key_is_refused(tmp_path: Path) -> None:
    (tmp_path / KEY_FILE).mkdir(mode=0o700)
    with pytest.raises(APOPKeyError, match="not a regular file"):
        APOPKey.for_data_dir(tmp_path)
