"""Configuration loading and validation (mailpost.config)."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import pytest

from mailpost import config
from mailpost.config import (
    DEVELOPMENT_LISTEN,
    Config,
    ConfigError,
    LimitsConfig,
    ListenConfig,
    from_mapping,
    load,
    parse_host_port,
)


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test runs in an empty directory with no $MAILPOST_CONFIG."""
    monkeypatch.delenv(config.ENV_VAR, raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def error_of(data: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as info:
        from_mapping(data)
    return str(info.value)


# --- defaults --------------------------------------------------------------------------------


def test_empty_mapping_gives_documented_defaults() -> None:
    cfg = from_mapping({})
    assert cfg.hostname == "mail.example.test"
    assert cfg.data_dir == Path("var")
    assert cfg.listen == DEVELOPMENT_LISTEN
    assert cfg.tls.cert is None and cfg.tls.key is None
    assert cfg.limits == LimitsConfig()
    assert cfg.limits.max_message_size == 26_214_400
    assert cfg.log.level == "info"
    assert cfg.source is None


def test_derived_paths_default_under_data_dir() -> None:
    cfg = from_mapping({"data_dir": "/srv/mail"})
    assert cfg.database_path == Path("/srv/mail/mailpost.db")
    assert cfg.cert_path == Path("/srv/mail/tls/cert.pem")
    assert cfg.key_path == Path("/srv/mail/tls/key.pem")


def test_min_free_disk_derives_from_message_size_unless_set() -> None:
    assert from_mapping({"limits": {"max_message_size": 1000}}).min_free_disk == 1500
    assert from_mapping({"limits": {"min_free_disk": 7}}).min_free_disk == 7


def test_load_without_any_file_uses_development_defaults() -> None:
    cfg = load()
    assert cfg == from_mapping({})
    assert cfg.source is None


# --- each section ----------------------------------------------------------------------------


def test_top_level_keys() -> None:
    cfg = from_mapping({"hostname": "mx1.example.org", "data_dir": "state"})
    assert cfg.hostname == "mx1.example.org"
    assert cfg.data_dir == Path("state")


def test_listen_string_or_list_and_missing_keys_are_off() -> None:
    cfg = from_mapping({"listen": {"smtp": "0.0.0.0:25",
                                   "imaps": ["127.0.0.1:993", "[::1]:993"]}})
    assert cfg.listen == ListenConfig(smtp=("0.0.0.0:25",),
                                      imaps=("127.0.0.1:993", "[::1]:993"))
    assert cfg.listen.pop3 == () and cfg.listen.submission == ()


def test_empty_listen_table_turns_every_protocol_off() -> None:
    listen = from_mapping({"listen": {}}).listen
    assert all(getattr(listen, f.name) == () for f in dataclasses.fields(listen))


def test_listen_rejects_one_address_for_two_protocols() -> None:
    message = error_of({"listen": {"smtp": "127.0.0.1:2525", "imap": "127.0.0.1:2525"}})
    assert message.startswith("listen.imap:") and "listen.smtp" in message


def test_listen_allows_port_zero_twice() -> None:
    listen = from_mapping({"listen": {"smtp": "127.0.0.1:0", "imap": "127.0.0.1:0"}}).listen
    assert listen.smtp == listen.imap == ("127.0.0.1:0",)


def test_tls_both_keys() -> None:
    cfg = from_mapping({"tls": {"cert": "c.pem", "key": "/etc/k.pem"}})
    assert cfg.tls.cert == Path("c.pem") and cfg.tls.key == Path("/etc/k.pem")
    assert cfg.cert_path == Path("c.pem") and cfg.key_path == Path("/etc/k.pem")


@pytest.mark.parametrize(("given", "missing"), [("cert", "key"), ("key", "cert")])
def test_tls_one_key_only_is_an_error_naming_the_missing_key(given: str, missing: str) -> None:
    message = error_of({"tls": {given: "x.pem"}})
    assert message.startswith(f"tls.{missing}:")
    assert "both" in message


def test_limits_override_and_int_accepted_for_float() -> None:
    limits = from_mapping({"limits": {"max_recipients": 10, "smtp_timeout": 60}}).limits
    assert limits.max_recipients == 10
    assert limits.smtp_timeout == 60.0 and isinstance(limits.smtp_timeout, float)
    assert limits.max_message_size == LimitsConfig().max_message_size


def test_limits_zero_allowed_only_where_meaningful() -> None:
    limits = from_mapping({"limits": {"min_free_disk": 0, "auth_fail_delay": 0}}).limits
    assert limits.min_free_disk == 0 and limits.auth_fail_delay == 0.0
    assert error_of({"limits": {"max_recipients": 0}}).startswith("limits.max_recipients:")


@pytest.mark.parametrize("value", [-1, -0.5, float("nan"), float("inf")])
def test_limits_reject_negative_and_non_finite(value: float) -> None:
    assert error_of({"limits": {"smtp_timeout": value}}).startswith("limits.smtp_timeout:")


def test_limits_fail_delay_max_below_fail_delay() -> None:
    message = error_of({"limits": {"auth_fail_delay": 5, "auth_fail_delay_max": 1}})
    assert message.startswith("limits.auth_fail_delay_max:")


@pytest.mark.parametrize("level", ["debug", "info", "warning", "error"])
def test_log_levels(level: str) -> None:
    assert from_mapping({"log": {"level": level}}).log.level == level


@pytest.mark.parametrize("level", ["INFO", "verbose", 3])
def test_log_level_invalid(level: object) -> None:
    assert error_of({"log": {"level": level}}).startswith("log.level:")


# --- unknown keys and wrong types ------------------------------------------------------------


@pytest.mark.parametrize(("data", "key"), [
    ({"hostnam": "x"}, "hostnam"),
    ({"listen": {"imap4": "127.0.0.1:143"}}, "listen.imap4"),
    ({"tls": {"chain": "x.pem"}}, "tls.chain"),
    ({"limits": {"max_size": 1}}, "limits.max_size"),
    ({"log": {"file": "x.log"}}, "log.file"),
])
def test_unknown_keys_at_every_level_are_named(data: dict[str, Any], key: str) -> None:
    message = error_of(data)
    assert message.startswith(f"{key}: unknown key")


@pytest.mark.parametrize(("data", "key", "expected"), [
    ({"hostname": 5}, "hostname", "a string"),
    ({"data_dir": ["var"]}, "data_dir", "a string"),
    ({"limits": {"max_recipients": True}}, "limits.max_recipients", "an integer"),
    ({"limits": {"max_message_size": 1.5}}, "limits.max_message_size", "an integer"),
    ({"limits": {"max_message_size": "25M"}}, "limits.max_message_size", "an integer"),
    ({"limits": {"smtp_timeout": False}}, "limits.smtp_timeout", "a number"),
    ({"tls": {"cert": 1, "key": "k"}}, "tls.cert", "a string"),
    ({"listen": {"smtp": 25}}, "listen.smtp", "host:port"),
    ({"listen": {"smtp": ["127.0.0.1:25", 26]}}, "listen.smtp", "host:port"),
])
def test_wrong_types_are_named(data: dict[str, Any], key: str, expected: str) -> None:
    message = error_of(data)
    assert message.startswith(f"{key}:")
    assert expected in message


def test_bool_is_not_an_integer_even_though_python_says_so() -> None:
    assert "boolean" in error_of({"limits": {"max_hops": False}})


@pytest.mark.parametrize("section", ["listen", "tls", "limits", "log"])
def test_section_must_be_a_table(section: str) -> None:
    assert error_of({section: "x"}).startswith(f"{section}: expected a table")


@pytest.mark.parametrize("hostname", ["", "mail example", "a..b", "-x.example", "x" * 64])
def test_bad_hostname(hostname: str) -> None:
    assert error_of({"hostname": hostname}).startswith("hostname:")


def test_empty_paths_rejected() -> None:
    assert error_of({"data_dir": ""}).startswith("data_dir:")
    assert error_of({"tls": {"cert": "", "key": "k"}}).startswith("tls.cert:")


# --- host:port -------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "expected"), [
    ("127.0.0.1:25", ("127.0.0.1", 25)),
    ("localhost:0", ("localhost", 0)),
    ("[::1]:993", ("::1", 993)),
    ("[::]:65535", ("::", 65535)),
])
def test_parse_host_port(text: str, expected: tuple[str, int]) -> None:
    assert parse_host_port(text) == expected


@pytest.mark.parametrize("text", [
    "127.0.0.1", ":25", "host:", "host:port", "host:-1", "host:65536", "::1:25",
    "[127.0.0.1]:25", "[::1:25", "host:\u00b2", "a b:25", "",
])
def test_parse_host_port_rejects(text: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_host_port(text, "listen.smtp")
    assert str(info.value).startswith("listen.smtp:")


def test_bad_listen_address_names_the_key() -> None:
    assert error_of({"listen": {"pop3": "localhost"}}).startswith("listen.pop3:")


# --- files and lookup order ------------------------------------------------------------------


def test_load_explicit_file(tmp_path: Path) -> None:
    text = 'hostname = "mx.example.org"\n[listen]\nsmtp = "127.0.0.1:25"\n'
    file = write(tmp_path / "x.toml", text)
    cfg = load(file)
    assert cfg.hostname == "mx.example.org"
    assert cfg.listen == ListenConfig(smtp=("127.0.0.1:25",))
    assert cfg.source == file


def test_invalid_toml(tmp_path: Path) -> None:
    file = write(tmp_path / "bad.toml", "hostname = \n")
    with pytest.raises(ConfigError) as info:
        load(file)
    assert "invalid TOML" in str(info.value) and "bad.toml" in str(info.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load(tmp_path / "nope.toml")
    assert "cannot read" in str(info.value) and "nope.toml" in str(info.value)


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0,
                    reason="needs file permissions that apply to the current user")
def test_unreadable_file(tmp_path: Path) -> None:
    file = write(tmp_path / "secret.toml", "")
    file.chmod(0)
    with pytest.raises(ConfigError) as info:
        load(file)
    assert "cannot read" in str(info.value)


def test_permission_denied_is_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same path as above, reachable when the tests run with root's permissions."""
    file = write(tmp_path / "secret.toml", "")

    def deny(self: Path, *args: object, **kwargs: object) -> None:
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "open", deny)
    with pytest.raises(ConfigError) as info:
        load(file)
    assert str(info.value) == f"cannot read {file}: Permission denied"


def test_directory_instead_of_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load(tmp_path)
    assert "cannot read" in str(info.value)


def test_validation_error_from_a_file_names_file_and_key(tmp_path: Path) -> None:
    file = write(tmp_path / "m.toml", "[limits]\nmax_recipients = -3\n")
    with pytest.raises(ConfigError) as info:
        load(file)
    assert "m.toml" in str(info.value) and "limits.max_recipients" in str(info.value)


def test_lookup_uses_working_directory_file(tmp_path: Path) -> None:
    write(tmp_path / "mailpost.toml", 'hostname = "cwd.example.org"\n')
    cfg = load()
    assert cfg.hostname == "cwd.example.org"
    assert cfg.source == Path("mailpost.toml")


def test_environment_variable_beats_working_directory(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path / "mailpost.toml", 'hostname = "cwd.example.org"\n')
    env_file = write(tmp_path / "env.toml", 'hostname = "env.example.org"\n')
    monkeypatch.setenv(config.ENV_VAR, str(env_file))
    assert load().hostname == "env.example.org"


def test_explicit_path_beats_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(config.ENV_VAR, str(write(tmp_path / "env.toml", 'hostname = "e.test"\n')))
    explicit = write(tmp_path / "cli.toml", 'hostname = "cli.example.org"\n')
    assert load(explicit).hostname == "cli.example.org"


def test_environment_variable_naming_a_missing_file_is_an_error(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(config.ENV_VAR, "does-not-exist.toml")
    with pytest.raises(ConfigError, match="does-not-exist.toml"):
        load()


def test_empty_environment_variable_is_ignored(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(config.ENV_VAR, "")
    write(tmp_path / "mailpost.toml", 'hostname = "cwd.example.org"\n')
    assert load().hostname == "cwd.example.org"


def test_relative_paths_stay_relative_to_working_directory(tmp_path: Path) -> None:
    sub = tmp_path / "etc"
    sub.mkdir()
    file = write(sub / "m.toml", 'data_dir = "state"\n[tls]\ncert = "c.pem"\nkey = "k.pem"\n')
    cfg = load(file)
    assert cfg.data_dir == Path("state")
    assert cfg.tls.cert == Path("c.pem")


def _toml_examples() -> list[str]:
    docs = Path(__file__).resolve().parents[1] / "docs" / "configuration.md"
    blocks = docs.read_text(encoding="utf-8").split("```toml\n")[1:]
    return [block.split("```", 1)[0] for block in blocks]


def test_documentation_has_examples() -> None:
    assert len(_toml_examples()) >= 2


@pytest.mark.parametrize("index", [0, 1])
def test_documented_examples_load(tmp_path: Path, index: int) -> None:
    """The examples in docs/configuration.md must stay valid."""
    cfg = load(write(tmp_path / "example.toml", _toml_examples()[index]))
    assert cfg.tls.cert is not None and cfg.listen.smtp


def test_development_example_matches_the_defaults(tmp_path: Path) -> None:
    cfg = load(write(tmp_path / "example.toml", _toml_examples()[0]))
    assert cfg.hostname == "mail.example.test"
    assert cfg.listen == DEVELOPMENT_LISTEN
    assert cfg.tls.cert == Path("var/tls/cert.pem")
    assert cfg.tls.key == Path("var/tls/key.pem")
    assert cfg.limits.max_message_size == 26_214_400
    assert isinstance(cfg, Config)


def test_imap_section_defaults_and_bounds() -> None:
    config = from_mapping({"imap": {"idle_timeout": 3600, "append_limit": 1000}})
    assert config.imap.idle_timeout == 3600.0 and config.append_limit == 1000
    assert from_mapping({}).append_limit == from_mapping({}).limits.max_message_size
    for table, key in (({"idle_timeout": 600}, "imap.idle_timeout"),
                       ({"bogus": 1}, "imap.bogus"),
                       ({"max_line_length": 100}, "imap.max_line_length"),
                       ({"write_timeout": 0}, "imap.write_timeout")):
        with pytest.raises(ConfigError, match=key):
            from_mapping({"imap": table})
