"""Configuration: one TOML file read once at start-up into frozen dataclasses.

Theory of operation
-------------------
This module is the only place that reads the configuration file or the environment. Every key
is declared in :mod:`mailpost.config_sections` with its type and default (re-exported here),
and ``docs/configuration.md`` documents each one.
Validation happens once, in :func:`from_mapping`; the rest of the program trusts the resulting
:class:`Config`. An unknown key, a value of the wrong type or an out-of-range value is a
:class:`ConfigError` whose message starts with the dotted key (``limits.max_recipients: ...``),
so a typo never silently leaves a default in force.

Lookup order for the file (an operator convention, not an RFC): ``--config PATH``, then
``$MAILPOST_CONFIG``, then ``./mailpost.toml``, then the built-in development defaults.

Relative paths (``data_dir``, ``tls.cert``, ``tls.key``) stay relative and are therefore resolved
against the working directory of the process, not against the directory of the file.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import math
import os
import tomllib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from mailpost.config_sections import (
    DEFAULT_DATA_DIR,
    DEFAULT_HOSTNAME,
    DEVELOPMENT_LISTEN,
    HOST_LABEL,
    IMAP_MIN_IDLE_TIMEOUT,
    POP3_MIN_IDLE_TIMEOUT,
    RELAY_TLS_MODES,
    Config,
    ConfigError,
    DeliveryConfig,
    DNSConfig,
    IMAPConfig,
    LimitsConfig,
    ListenConfig,
    LogConfig,
    MailAuthConfig,
    POP3Config,
    SubmissionConfig,
    TLSConfig,
    address_list,
    parse_host_port,
)

__all__ = [
    "DEFAULT_DATA_DIR",
    "DEFAULT_FILE",
    "DEFAULT_HOSTNAME",
    "DEVELOPMENT_LISTEN",
    "ENV_VAR",
    "HOST_LABEL",
    "IMAP_MIN_IDLE_TIMEOUT",
    "POP3_MIN_IDLE_TIMEOUT",
    "RELAY_TLS_MODES",
    "Config",
    "ConfigError",
    "DNSConfig",
    "DeliveryConfig",
    "IMAPConfig",
    "LimitsConfig",
    "ListenConfig",
    "LogConfig",
    "MailAuthConfig",
    "POP3Config",
    "SubmissionConfig",
    "TLSConfig",
    "address_list",
    "find_config_file",
    "from_mapping",
    "load",
    "parse_host_port",
]

ENV_VAR = "MAILPOST_CONFIG"
DEFAULT_FILE = "mailpost.toml"


_LOG_LEVELS = ("debug", "info", "warning", "error")
_TOP_LEVEL_KEYS = ("hostname", "data_dir", "listen", "tls", "limits", "log", "pop3", "imap",
                   "delivery", "dns", "submission", "mailauth")
# Limits where 0 is meaningful: "derive from max_message_size" and "no delay".
_ZERO_ALLOWED = frozenset({"min_free_disk", "auth_fail_delay"})

_TYPE_NAMES = {str: "a string", int: "an integer", float: "a number", bool: "a boolean"}


def _type_name(value: Any) -> str:
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "an array"
    return _TYPE_NAMES.get(type(value), type(value).__name__)


def _check_type(key: str, value: Any, expected: type) -> Any:
    """Return ``value`` converted to ``expected``, or raise naming ``key``.

    TOML integers are accepted where a float is expected. Booleans are rejected where a number
    is expected even though ``bool`` subclasses ``int`` in Python: ``max_recipients = true`` is
    a mistake, not 1.
    """
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if (isinstance(value, bool) and expected is not bool) or not isinstance(value, expected):
        raise ConfigError(f"{key}: expected {_TYPE_NAMES[expected]}, got {_type_name(value)}")
    return value


def _unknown_key(key: str, known: tuple[str, ...] | frozenset[str]) -> ConfigError:
    return ConfigError(f"{key}: unknown key (expected one of: {', '.join(sorted(known))})")


def _check_limit(key: str, value: float) -> None:
    """Reject NaN, infinity and non-positive values: every limit must be a real bound."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"limits.{key}: must be a finite number, got {value}")
    if value < 0 or (value == 0 and key not in _ZERO_ALLOWED):
        qualifier = "zero or positive" if key in _ZERO_ALLOWED else "positive"
        raise ConfigError(f"limits.{key}: must be {qualifier}, got {value}")


def _build_limits(table: Mapping[str, Any]) -> LimitsConfig:
    defaults = LimitsConfig()
    names = frozenset(f.name for f in dataclasses.fields(LimitsConfig))
    values: dict[str, Any] = {}
    for key, value in table.items():
        if key not in names:
            raise _unknown_key(f"limits.{key}", names)
        checked = _check_type(f"limits.{key}", value, type(getattr(defaults, key)))
        _check_limit(key, checked)
        values[key] = checked
    limits = LimitsConfig(**values)
    if limits.auth_fail_delay_max < limits.auth_fail_delay:
        raise ConfigError(
            f"limits.auth_fail_delay_max: {limits.auth_fail_delay_max} is below "
            f"limits.auth_fail_delay ({limits.auth_fail_delay})")
    return limits


def _build_listen(table: Mapping[str, Any]) -> ListenConfig:
    names = tuple(f.name for f in dataclasses.fields(ListenConfig))
    values: dict[str, tuple[str, ...]] = {}
    for key, value in table.items():
        if key not in names:
            raise _unknown_key(f"listen.{key}", names)
        values[key] = address_list(value, f"listen.{key}")
    _check_no_shared_address(values)
    return ListenConfig(**values)


def _check_no_shared_address(values: Mapping[str, tuple[str, ...]]) -> None:
    """Two listeners on one address would fail at bind time; say which keys clash now."""
    owners: dict[tuple[str, int], str] = {}
    for key, addresses in values.items():
        for address in addresses:
            host, port = parse_host_port(address, f"listen.{key}")
            if port == 0:  # each port-0 listener gets its own free port
                continue
            if (host, port) in owners:
                raise ConfigError(
                    f"listen.{key}: {address} is already used by listen.{owners[(host, port)]}")
            owners[(host, port)] = key


def _path(key: str, value: Any, base: Path) -> Path:
    text: str = _check_type(key, value, str)
    if not text:
        raise ConfigError(f"{key}: must not be empty")
    return base / text


def _build_tls(table: Mapping[str, Any], base: Path) -> TLSConfig:
    values: dict[str, Path] = {}
    for key, value in table.items():
        if key not in ("cert", "key"):
            raise _unknown_key(f"tls.{key}", ("cert", "key"))
        values[key] = _path(f"tls.{key}", value, base)
    if len(values) == 1:
        missing = "key" if "cert" in values else "cert"
        raise ConfigError(
            f"tls.{missing}: missing; set both cert and key, or neither for a self-signed pair")
    return TLSConfig(**values)


def _build_log(table: Mapping[str, Any]) -> LogConfig:
    for key, value in table.items():
        if key != "level":
            raise _unknown_key(f"log.{key}", ("level",))
        if not isinstance(value, str) or value not in _LOG_LEVELS:
            raise ConfigError(
                f"log.level: expected one of {', '.join(_LOG_LEVELS)}, got {value!r}")
    return LogConfig(**table)


def _section_values(section: str, cls: type[Any], table: Mapping[str, Any],
                    convert: Mapping[str, Callable[[str, Any], Any]] | None = None
                    ) -> dict[str, Any]:
    """Check a table against the dataclass ``cls``: unknown keys are errors naming the key,
    each value gets its default's type, or goes through ``convert[key]`` when given."""
    defaults = cls()
    names = frozenset(f.name for f in dataclasses.fields(cls))
    values: dict[str, Any] = {}
    for key, value in table.items():
        name = f"{section}.{key}"
        if key not in names:
            raise _unknown_key(name, names)
        if convert is not None and key in convert:
            values[key] = convert[key](name, value)
        else:
            values[key] = _check_type(name, value, type(getattr(defaults, key)))
    return values


def _build_pop3(table: Mapping[str, Any]) -> POP3Config:
    values = _section_values("pop3", POP3Config, table)
    timeout = values.get("idle_timeout", POP3Config().idle_timeout)
    if not math.isfinite(timeout) or timeout < POP3_MIN_IDLE_TIMEOUT:
        raise ConfigError(f"pop3.idle_timeout: must be at least {POP3_MIN_IDLE_TIMEOUT:g} "
                          f"seconds (RFC 1939 §3), got {timeout}")
    return POP3Config(**values)


def _build_imap(table: Mapping[str, Any]) -> IMAPConfig:
    config = IMAPConfig(**_section_values("imap", IMAPConfig, table))
    if not math.isfinite(config.idle_timeout) or config.idle_timeout < IMAP_MIN_IDLE_TIMEOUT:
        raise ConfigError(f"imap.idle_timeout: must be at least {IMAP_MIN_IDLE_TIMEOUT:g} "
                          f"seconds (RFC 9051 §5.4), got {config.idle_timeout}")
    for name in ("preauth_timeout", "write_timeout"):
        value = getattr(config, name)
        if not math.isfinite(value) or value <= 0:
            raise ConfigError(f"imap.{name}: must be a positive number of seconds")
    if config.max_line_length < 8192:
        raise ConfigError("imap.max_line_length: must be at least 8192 (RFC 2683 §3.2.1.5)")
    if config.max_command_size < config.max_line_length:
        raise ConfigError("imap.max_command_size: must be at least imap.max_line_length")
    if config.append_limit < 0:
        raise ConfigError("imap.append_limit: must be 0 (= limits.max_message_size) or more")
    return config


_DELIVERY_STRINGS = frozenset({"relay", "relay_username", "relay_password", "relay_tls",
                               "source_address", "mta_sts_ca_file"})


def _build_delivery(table: Mapping[str, Any]) -> DeliveryConfig:
    defaults = DeliveryConfig()
    names = frozenset(f.name for f in dataclasses.fields(DeliveryConfig))
    values: dict[str, Any] = {}
    for key, value in table.items():
        if key not in names:
            raise _unknown_key(f"delivery.{key}", names)
        if key == "routes":
            values[key] = _build_routes(value)
        elif key in _DELIVERY_STRINGS:
            values[key] = _check_type(f"delivery.{key}", value, str)
        else:
            values[key] = _check_type(f"delivery.{key}", value, type(getattr(defaults, key)))
            if not math.isfinite(values[key]) or values[key] < 0:
                raise ConfigError(f"delivery.{key}: must be zero or positive, got {value}")
    config = DeliveryConfig(**values)
    _check_delivery(config)
    return config


def _check_delivery(config: DeliveryConfig) -> None:
    if config.relay is not None:
        parse_host_port(config.relay, "delivery.relay")
    if config.relay_tls not in RELAY_TLS_MODES:
        raise ConfigError(f"delivery.relay_tls: expected one of {', '.join(RELAY_TLS_MODES)}, "
                          f"got {config.relay_tls!r}")
    if (config.relay_username is None) != (config.relay_password is None):
        raise ConfigError("delivery.relay_password: set relay_username and relay_password "
                          "together")
    for key in ("per_domain_concurrency", "concurrency", "max_age", "retry_base", "retry_max"):
        if getattr(config, key) <= 0:
            raise ConfigError(f"delivery.{key}: must be positive")
    try:
        ipaddress.ip_address(config.source_address or "::")
    except ValueError as exc:
        raise ConfigError(f"delivery.source_address: {exc}") from exc
    if config.retry_max < config.retry_base:
        raise ConfigError("delivery.retry_max: must be at least delivery.retry_base")


def _build_routes(value: Any) -> dict[str, str]:
    if not isinstance(value, dict):
        raise ConfigError(f"delivery.routes: expected a table, got {_type_name(value)}")
    routes: dict[str, str] = {}
    for domain, target in value.items():
        key = f"delivery.routes.{domain}"
        parse_host_port(_check_type(key, target, str), key)
        routes[domain.lower().rstrip(".")] = target
    return routes


def _build_dns(table: Mapping[str, Any]) -> DNSConfig:
    for key, value in table.items():
        if key != "nameservers":
            raise _unknown_key(f"dns.{key}", ("nameservers",))
        return DNSConfig(address_list(value, "dns.nameservers"))
    return DNSConfig()


def _build_submission(table: Mapping[str, Any]) -> SubmissionConfig:
    for key, value in table.items():
        if key != "save_to_sent":
            raise _unknown_key(f"submission.{key}", ("save_to_sent",))
        return SubmissionConfig(_check_type("submission.save_to_sent", value, bool))
    return SubmissionConfig()


def _build_mailauth(table: Mapping[str, Any]) -> MailAuthConfig:
    convert = {"trusted_networks": lambda _name, value: _networks(value)}
    config = MailAuthConfig(**_section_values("mailauth", MailAuthConfig, table, convert))
    if config.max_verify_size <= 0:
        raise ConfigError("mailauth.max_verify_size: must be positive")
    if not HOST_LABEL.fullmatch(config.dkim_selector):
        raise ConfigError(f"mailauth.dkim_selector: {config.dkim_selector!r} is not a DNS label")
    return config


def _networks(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ConfigError("mailauth.trusted_networks: expected a list of networks")
    for item in value:
        try:
            ipaddress.ip_network(item, strict=False)
        except ValueError as exc:
            raise ConfigError(f"mailauth.trusted_networks: {item!r}: {exc}") from exc
    return tuple(value)


def _table(data: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = data.get(key, {})
    if not isinstance(value, dict):
        raise ConfigError(f"{key}: expected a table, got {_type_name(value)}")
    return value


def _check_hostname(value: Any) -> str:
    """The name this server announces (SMTP greeting, EHLO, Received): dot-separated labels."""
    hostname: str = _check_type("hostname", value, str)
    labels = hostname.removesuffix(".").split(".")
    if len(hostname) > 253 or not all(HOST_LABEL.fullmatch(label) for label in labels):
        raise ConfigError(
            f"hostname: {hostname!r} is not a host name (letters, digits, hyphens and dots)")
    return hostname


def from_mapping(data: Mapping[str, Any], base: Path = Path("."),
                 source: Path | None = None) -> Config:
    """Build a validated :class:`Config` from parsed TOML; relative paths are against ``base``.

    A missing ``[listen]`` table means the development listeners (:data:`DEVELOPMENT_LISTEN`);
    a present one lists exactly the protocols to serve.
    """
    for key in data:
        if key not in _TOP_LEVEL_KEYS:
            raise _unknown_key(key, _TOP_LEVEL_KEYS)
    listen = _build_listen(_table(data, "listen")) if "listen" in data else DEVELOPMENT_LISTEN
    return Config(
        hostname=_check_hostname(data.get("hostname", DEFAULT_HOSTNAME)),
        data_dir=_path("data_dir", data.get("data_dir", DEFAULT_DATA_DIR), base),
        listen=listen,
        tls=_build_tls(_table(data, "tls"), base),
        limits=_build_limits(_table(data, "limits")),
        log=_build_log(_table(data, "log")),
        pop3=_build_pop3(_table(data, "pop3")),
        imap=_build_imap(_table(data, "imap")),
        delivery=_build_delivery(_table(data, "delivery")),
        dns=_build_dns(_table(data, "dns")),
        submission=_build_submission(_table(data, "submission")),
        mailauth=_build_mailauth(_table(data, "mailauth")),
        source=source,
    )


def find_config_file(path: str | os.PathLike[str] | None = None) -> Path | None:
    """The file :func:`load` would read: ``path``, ``$MAILPOST_CONFIG``, ``./mailpost.toml``."""
    if path is not None:
        return Path(path)
    from_env = os.environ.get(ENV_VAR)
    if from_env:
        return Path(from_env)
    if Path(DEFAULT_FILE).is_file():
        return Path(DEFAULT_FILE)
    return None


def load(path: str | os.PathLike[str] | None = None) -> Config:
    """Find and load the configuration (see module docstring for the lookup order).

    Raises:
        ConfigError: the file cannot be read, is not TOML, or fails validation.
    """
    file = find_config_file(path)
    if file is None:
        return from_mapping({})
    try:
        with file.open("rb") as handle:
            data = tomllib.load(handle)
    except OSError as exc:
        raise ConfigError(f"cannot read {file}: {exc.strerror or exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{file}: invalid TOML: {exc}") from exc
    try:
        # Relative paths stay relative to the working directory (see the module docstring):
        # the same rule as for a path given on the command line.
        return from_mapping(data, Path("."), source=file)
    except ConfigError as exc:
        raise ConfigError(f"{file}: {exc}") from exc
