"""The ``[pop3]`` configuration table."""

from __future__ import annotations

import pytest

from mailpost.config import ConfigError, POP3Config, from_mapping


def test_defaults_refuse_insecure_auth_and_apop_and_use_ten_minutes() -> None:
    assert from_mapping({}).pop3 == POP3Config(allow_insecure_auth=False, idle_timeout=600.0,
                                               apop=False)


def test_values_are_read() -> None:
    config = from_mapping({"pop3": {"allow_insecure_auth": True, "idle_timeout": 900,
                                    "apop": True}})
    assert config.pop3 == POP3Config(allow_insecure_auth=True, idle_timeout=900.0, apop=True)


@pytest.mark.parametrize(("table", "message"), [
    ({"pop3": {"apop": 1}}, "pop3.apop: expected a boolean"),
    ({"pop3": {"apop": "on"}}, "pop3.apop: expected a boolean"),
    ({"pop3": {"apops": True}}, "pop3.apops: unknown key"),
    ({"pop3": {"allow_insecure_auth": 1}}, "pop3.allow_insecure_auth: expected a boolean"),
    ({"pop3": {"allow_insecure_auth": "yes"}}, "pop3.allow_insecure_auth: expected a boolean"),
    ({"pop3": {"idle_timeout": 60}}, "pop3.idle_timeout: must be at least 600 seconds"),
    ({"pop3": {"idle_timeout": float("inf")}}, "pop3.idle_timeout: must be at least 600"),
    ({"pop3": {"idle_timeout": float("nan")}}, "pop3.idle_timeout: must be at least 600"),
    ({"pop3": {"idle_timeout": True}}, "pop3.idle_timeout: expected a number"),
    ({"pop3": "on"}, "pop3: expected a table"),
])
def test_invalid_values_name_the_key(table: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as error:
        from_mapping(table)
    assert str(error.value).startswith(message)
