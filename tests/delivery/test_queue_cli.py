"""``mailpost queue list|show|flush|delete`` and the ``[delivery]``, ``[dns]`` and
``[submission]`` configuration keys."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from mailpost import cli
from mailpost.bus import LocalBus
from mailpost.config import ConfigError, from_mapping
from mailpost.store import open_store
from mailpost.store.types import OutboundEnvelope, OutboundRecipient


def write_config(tmp_path: Path) -> Path:
    path = tmp_path / "mailpost.toml"
    path.write_text(f'data_dir = "{tmp_path / "data"}"\n')
    return path


async def queue_one(data_dir: Path) -> int:
    store = await open_store(data_dir, LocalBus())
    try:
        writer = store.blobs.writer()
        writer.write(b"Return-Path: <a@example.org>\r\nSubject: queued one\r\n\r\nbody\r\n")
        blob = await writer.finish()
        outcome = await store.deliver(blob, [], OutboundEnvelope(
            "a@example.org", (OutboundRecipient("c@remote.net", notify="FAILURE"),)))
        assert outcome.queued is not None
        await store.record_attempt(outcome.queued.id, datetime.now(UTC) + timedelta(days=1),
                                   "451 4.7.1 greylisted")
        return outcome.queued.id
    finally:
        await store.close()


def mailpost(config: Path, *args: str) -> int:
    return cli.main(["--config", str(config), *args])


def test_queue_commands(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path)
    assert mailpost(config, "queue", "list") == 0
    assert "queue is empty" in capsys.readouterr().out
    entry_id = asyncio.run(queue_one(tmp_path / "data"))

    assert mailpost(config, "queue", "list") == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split()[:4] == ["ID", "SENDER", "RECIPIENTS", "ATTEMPTS"]
    row = out.splitlines()[1]
    assert row.split()[:4] == [str(entry_id), "<a@example.org>", "c@remote.net", "1"]
    assert row.endswith("451 4.7.1 greylisted")

    assert mailpost(config, "queue", "show", str(entry_id)) == 0
    out = capsys.readouterr().out
    assert "recipient:  <c@remote.net> NOTIFY=FAILURE" in out
    assert "Subject: queued one" in out and "body" not in out.split("Subject")[1]

    assert mailpost(config, "queue", "flush") == 0
    assert "1 queue entry due now" in capsys.readouterr().out
    assert mailpost(config, "queue", "flush", str(entry_id)) == 0

    assert mailpost(config, "queue", "delete", str(entry_id)) == 0
    assert f"deleted queue entry {entry_id}" in capsys.readouterr().out
    assert mailpost(config, "queue", "delete", str(entry_id)) == 1
    assert f"no queue entry {entry_id}" in capsys.readouterr().err
    assert mailpost(config, "queue", "show", "999") == 1
    assert mailpost(config, "queue", "flush", "999") == 1


def test_delivery_config_defaults_and_values() -> None:
    default = from_mapping({})
    assert default.delivery.max_age == 5 * 86400 and default.delivery.delay_warning == 4 * 3600
    assert default.delivery.relay is None and default.delivery.routes == {}
    assert default.dns.nameservers == () and default.submission.save_to_sent is False
    config = from_mapping({
        "delivery": {"relay": "smart.example:587", "relay_username": "u",
                     "relay_password": "p", "relay_tls": "verify",
                     "routes": {"Internal.Example": "10.0.0.5:25"}, "max_age": 3600},
        "dns": {"nameservers": ["127.0.0.1:5353"]},
        "submission": {"save_to_sent": True}})
    assert config.delivery.routes == {"internal.example": "10.0.0.5:25"}
    assert (config.delivery.relay_tls, config.delivery.max_age) == ("verify", 3600.0)
    assert config.dns.nameservers == ("127.0.0.1:5353",)
    assert config.submission.save_to_sent is True


@pytest.mark.parametrize(("table", "message"), [
    ({"delivery": {"relay": "nohost"}}, "delivery.relay"),
    ({"delivery": {"relay_tls": "sometimes"}}, "delivery.relay_tls"),
    ({"delivery": {"relay_username": "u"}}, "delivery.relay_password"),
    ({"delivery": {"routes": {"x.example": "x"}}}, "delivery.routes.x.example"),
    ({"delivery": {"max_age": 0}}, "delivery.max_age"),
    ({"delivery": {"retry_base": 600, "retry_max": 60}}, "delivery.retry_max"),
    ({"delivery": {"colour": 1}}, "delivery.colour"),
    ({"dns": {"nameservers": ["8.8.8.8"]}}, "dns.nameservers"),
    ({"submission": {"save_to_sent": "yes"}}, "submission.save_to_sent"),
])
def test_delivery_config_errors_name_the_key(table: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        from_mapping(table)
