"""The configuration's data model: one frozen dataclass per TOML section, and :class:`Config`.

Theory of operation
-------------------
Every key is declared here with its type and default (``docs/configuration.md`` documents
each one); :mod:`mailpost.config` reads the file, validates every value and builds these
objects, and the rest of the program only reads them. :class:`ConfigError` and the address
helpers live here because both modules need them. Import from :mod:`mailpost.config`, which
re-exports everything public.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class ConfigError(Exception):
    """The configuration is unreadable or invalid; the message names the offending key."""


# A host name label: letters, digits and inner hyphens, 1-63 octets (RFC 1123 §2.1 relaxes
# RFC 952 to allow a leading digit; RFC 5321 §4.1.2 `sub-domain` is the same shape).
HOST_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")


def address_list(value: Any, key: str) -> tuple[str, ...]:
    """Accept "host:port" or a list of them; validate the shape of each."""
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
        raise ConfigError(f"{key}: expected \"host:port\" or a list of them")
    for item in items:
        parse_host_port(item, key)
    return tuple(items)


def parse_host_port(text: str, key: str = "address") -> tuple[str, int]:
    """Split "host:port" (IPv6 as "[::1]:port") into its parts, validating the port.

    Raises:
        ConfigError: naming ``key`` when the text is not of that shape or the port is not 0-65535
            (0 asks the operating system for a free port, which tests use).
    """
    host, sep, port_text = text.rpartition(":")
    # isdigit() alone accepts non-ASCII digits such as "²" that int() then rejects.
    if not sep or not host or not (port_text.isascii() and port_text.isdigit()):
        raise ConfigError(f"{key}: {text!r} is not \"host:port\"")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        if ":" not in host:
            raise ConfigError(f"{key}: {text!r}: brackets are only for IPv6 addresses")
    elif ":" in host or "[" in host or "]" in host:
        # "::1:25" is ambiguous; the bracket form says where the address ends.
        raise ConfigError(f"{key}: {text!r}: write an IPv6 address as \"[::1]:port\"")
    if not host or any(c.isspace() for c in host):
        raise ConfigError(f"{key}: {text!r} has an empty or malformed host")
    port = int(port_text)
    if port > 65535:
        raise ConfigError(f"{key}: port {port} out of range 0-65535")
    return host, port


@dataclass(frozen=True, slots=True)
class ListenConfig:
    """Listener addresses per protocol; an empty tuple means the protocol is off."""

    smtp: tuple[str, ...] = ()
    submission: tuple[str, ...] = ()
    submissions: tuple[str, ...] = ()
    imap: tuple[str, ...] = ()
    imaps: tuple[str, ...] = ()
    pop3: tuple[str, ...] = ()
    pop3s: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class TLSConfig:
    """Certificate and key; both unset means a self-signed pair under data_dir/tls."""

    cert: Path | None = None
    key: Path | None = None


@dataclass(frozen=True, slots=True)
class LimitsConfig:
    """Every bound the servers enforce (security catalogue §0 invariant 5)."""

    max_message_size: int = 26_214_400
    max_connections_per_ip: int = 100
    max_connections_per_user: int = 50
    max_recipients: int = 1000
    max_line_length: int = 4096
    max_errors: int = 20
    max_hops: int = 50
    smtp_timeout: float = 300.0
    tls_handshake_timeout: float = 30.0
    auth_max_failures: int = 5
    auth_fail_delay: float = 2.0
    auth_fail_delay_max: float = 15.0
    auth_fail_window: float = 900.0
    min_free_disk: int = 0


@dataclass(frozen=True, slots=True)
class LogConfig:
    level: str = "info"


POP3_MIN_IDLE_TIMEOUT = 600.0  # RFC 1939 §3: an autologout timer MUST be at least 10 minutes


@dataclass(frozen=True, slots=True)
class POP3Config:
    """POP3 policy."""

    # RFC 2595 §2.3, RFC 8314 §4.1: no clear-text credentials before TLS unless this is set.
    allow_insecure_auth: bool = False
    idle_timeout: float = POP3_MIN_IDLE_TIMEOUT
    # RFC 1939 §7 APOP: off by default, because its MD5 digest needs the password in a
    # recoverable form on the server (encrypted with data_dir/apop.key, see auth.apop_key).
    apop: bool = False


IMAP_MIN_IDLE_TIMEOUT = 1800.0  # RFC 9051 §5.4: an autologout timer of at least 30 minutes


@dataclass(frozen=True, slots=True)
class IMAPConfig:
    """IMAP policy and bounds."""

    # RFC 9051 §11.7, RFC 8314 §4.1: LOGINDISABLED before TLS unless this is set.
    allow_insecure_auth: bool = False
    idle_timeout: float = IMAP_MIN_IDLE_TIMEOUT
    # Before login the RFC lets us be much stricter (catalogue D1).
    preauth_timeout: float = 60.0
    # A client that stops reading our output is cut after this long (catalogue I10).
    write_timeout: float = 120.0
    # Command line and whole-command bounds after login (catalogue I5; Dovecot's 64 KiB).
    max_line_length: int = 65536
    max_command_size: int = 1_048_576
    # APPENDLIMIT (RFC 7889); 0 means limits.max_message_size.
    append_limit: int = 0


RELAY_TLS_MODES = ("opportunistic", "required", "verify")


@dataclass(frozen=True, slots=True)
class DeliveryConfig:
    """The outbound queue (mailpost.delivery.queue): where and how remote mail is sent."""

    # Smarthost "host:port"; when set, every remote domain without a route goes there.
    relay: str | None = None
    relay_username: str | None = None
    relay_password: str | None = None
    # opportunistic: STARTTLS when offered; required: no TLS, no delivery; verify: required
    # and the certificate must match the host name. Applies to relays and routes.
    relay_tls: str = "opportunistic"
    # Domain (lowercase) -> "host:port", consulted before the relay and MX lookup.
    routes: dict[str, str] = field(default_factory=dict)
    max_age: float = 5 * 86400.0        # give up and bounce after this long (seconds)
    delay_warning: float = 4 * 3600.0   # send one "delayed" DSN after this long; 0 = never
    per_domain_concurrency: int = 5
    concurrency: int = 20
    retry_base: float = 300.0           # first back-off; doubled each attempt, with jitter
    retry_max: float = 3 * 3600.0
    source_address: str | None = None   # local address of outbound connections (SPF sees it)
    # RFC 8461: honour recipient domains' MTA-STS policies (not for routes and the relay).
    mta_sts: bool = True
    mta_sts_ca_file: str | None = None  # extra CAs (PEM) for policy hosts, beside the system's


@dataclass(frozen=True, slots=True)
class DNSConfig:
    """Resolvers for outbound delivery; empty means the system's (/etc/resolv.conf)."""

    nameservers: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class SubmissionConfig:
    # A copy of each message an authenticated user submits goes to their Sent mailbox.
    save_to_sent: bool = False


@dataclass(frozen=True, slots=True)
class MailAuthConfig:
    """SPF, DKIM and DMARC on the MX listener, DKIM signing on submission."""

    verify_inbound: bool = True
    # RFC 7489 §6.7: honour p=reject with 550 5.7.1; off means such mail goes to Junk.
    dmarc_reject: bool = False
    dkim_selector: str = "mail"
    # Larger messages are not DKIM-verified (they are held in memory while checked).
    max_verify_size: int = 10_485_760
    # Clients here are not checked (local scripts, a content filter in front of us).
    trusted_networks: tuple[str, ...] = ("127.0.0.0/8", "::1/128")


DEFAULT_HOSTNAME = "mail.example.test"
DEFAULT_DATA_DIR = "var"


@dataclass(frozen=True, slots=True)
class Config:
    hostname: str = DEFAULT_HOSTNAME
    data_dir: Path = Path(DEFAULT_DATA_DIR)
    listen: ListenConfig = field(default_factory=ListenConfig)
    tls: TLSConfig = field(default_factory=TLSConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    log: LogConfig = field(default_factory=LogConfig)
    pop3: POP3Config = field(default_factory=POP3Config)
    imap: IMAPConfig = field(default_factory=IMAPConfig)
    delivery: DeliveryConfig = field(default_factory=DeliveryConfig)
    dns: DNSConfig = field(default_factory=DNSConfig)
    submission: SubmissionConfig = field(default_factory=SubmissionConfig)
    mailauth: MailAuthConfig = field(default_factory=MailAuthConfig)
    source: Path | None = None

    @property
    def append_limit(self) -> int:
        """The largest message APPEND accepts (RFC 7889 APPENDLIMIT)."""
        return self.imap.append_limit or self.limits.max_message_size

    @property
    def database_path(self) -> Path:
        return self.data_dir / "mailpost.db"

    @property
    def cert_path(self) -> Path:
        return self.tls.cert or self.data_dir / "tls" / "cert.pem"

    @property
    def key_path(self) -> Path:
        return self.tls.key or self.data_dir / "tls" / "key.pem"

    @property
    def min_free_disk(self) -> int:
        """Free space below which new mail is refused with 452 4.3.1 (Postfix: 1.5 x size)."""
        return self.limits.min_free_disk or int(self.limits.max_message_size * 1.5)


DEVELOPMENT_LISTEN = ListenConfig(
    smtp=("127.0.0.1:2525",),
    submission=("127.0.0.1:2587",),
    submissions=("127.0.0.1:2465",),
    imap=("127.0.0.1:2143",),
    imaps=("127.0.0.1:2993",),
    pop3=("127.0.0.1:2110",),
    pop3s=("127.0.0.1:2995",),
)
