"""The POP3 session with APOP on, through a scripted connection and a real store: the banner's
timestamp, a login by digest, and store trouble while checking it."""

from __future__ import annotations

import hashlib
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from mailpost.auth.apop_key import APOPKey
from mailpost.auth.authenticator import Authenticator
from mailpost.auth.ratelimit import AuthThrottle
from mailpost.bus import LocalBus
from mailpost.config import Config, LimitsConfig, POP3Config
from mailpost.net.listener import AccountSessionLimiter
from mailpost.pop3.session import POP3Services, POP3Session
from mailpost.store import open_store
from mailpost.store.interface import MailStore
from tests.pop3.test_pop3_session import FlakyStore, ScriptedConnection

ALICE = "alice@example.test"
SECRET = "apop secret"
BANNER = re.compile(rb"\+OK POP3 server ready (<[0-9a-f.]+@mail\.example\.test>)")


@dataclass
class Setup:
    store: MailStore
    services: POP3Services
    throttle: AuthThrottle

    async def run(self, script: bytes, store: object | None = None) -> list[bytes]:
        """Run one session: the greeting decides the digest sent in ``APOP {digest}``."""
        services = replace(self.services, store=store or self.store)  # type: ignore[arg-type]
        connection = _DigestConnection(script)
        await POP3Session(connection, services).run()  # type: ignore[arg-type]
        return connection.lines()


class _DigestConnection(ScriptedConnection):
    """Fills ``{digest}`` in the script from the timestamp of the greeting it was sent."""

    def __init__(self, script: bytes) -> None:
        super().__init__([])
        self.script = script

    async def read(self, timeout: float) -> bytes:
        script, self.script = self.script, b""
        match = BANNER.match(bytes(self.output))
        if not script or match is None:
            return b""
        digest = hashlib.md5(match.group(1) + SECRET.encode()).hexdigest()
        return script.replace(b"{digest}", digest.encode())


@pytest.fixture
async def setup(tmp_path: Path) -> AsyncIterator[Setup]:
    data_dir = tmp_path / "data"
    store = await open_store(data_dir, LocalBus())
    await store.add_domain("example.test")
    sealed = APOPKey.for_data_dir(data_dir).seal(ALICE, SECRET)
    await store.add_account(ALICE, "no-password-hash", apop_secret=sealed)
    limits = replace(LimitsConfig(), auth_fail_delay=0.01, auth_fail_delay_max=0.02)
    config = replace(Config(), data_dir=data_dir, limits=limits, pop3=POP3Config(apop=True))
    throttle = AuthThrottle.from_limits(limits)
    services = POP3Services(config, store, Authenticator(store, throttle), throttle, None,
                            AccountSessionLimiter(5))
    yield Setup(store, services, throttle)
    await store.close()


async def test_login_by_digest(setup: Setup) -> None:
    lines = await setup.run(f"APOP {ALICE} {{digest}}\r\nSTAT\r\nQUIT\r\n".encode())
    assert BANNER.fullmatch(lines[0])
    assert lines[1:4] == [b"+OK maildrop has 0 messages (0 octets)", b"+OK 0 0",
                          b"+OK mail.example.test closing, 0 messages deleted"]


async def test_each_session_gets_its_own_timestamp(setup: Setup) -> None:
    first = await setup.run(b"QUIT\r\n")
    second = await setup.run(b"QUIT\r\n")
    assert BANNER.fullmatch(first[0]) and BANNER.fullmatch(second[0])
    assert first[0] != second[0]


async def test_a_wrong_digest_is_refused_and_counted(setup: Setup) -> None:
    lines = await setup.run(f"APOP {ALICE} {'f' * 32}\r\nQUIT\r\n".encode())
    assert lines[1] == b"-ERR [AUTH] invalid user name or password"
    assert setup.throttle.delay("192.0.2.7") > 0


@pytest.mark.parametrize("failing", ["get_apop_secret", "get_account"])
async def test_store_trouble_while_checking_is_sys_temp_and_not_a_failure(
        setup: Setup, failing: str) -> None:
    flaky = FlakyStore(setup.store, {failing})
    services = replace(setup.services, authenticator=Authenticator(flaky, setup.throttle))
    setup = replace(setup, services=services)
    lines = await setup.run(f"APOP {ALICE} {{digest}}\r\nQUIT\r\n".encode(), store=flaky)
    assert lines[1] == b"-ERR [SYS/TEMP] maildrop unavailable, try again later"
    assert setup.throttle.delay("192.0.2.7") == 0.0
