"""Throttling of failed authentication (security catalogue R8; RFC 9051 §11.7: "A server SHOULD
have mechanisms in place to limit or delay failed AUTHENTICATE/LOGIN attempts").

Theory of operation
-------------------
Two tables count recent failures: one keyed by the client's network, one by the account name
that was tried. A failure bumps both; a success clears both. An entry expires ``window``
seconds after its *last* failure, so a steady trickle of guesses keeps its entry alive.

* **Delay.** Before answering an attempt the server waits ``delay(ip, account)`` seconds: 0 with
  no recent failures, else ``min(base * 2**(n-1), max)`` for the larger of the two counts (2, 4,
  8, 15 s with the defaults, as Dovecot's auth penalty does). The delay slows guessing without
  telling the client anything: it is the same for existing and unknown users.
* **Drop.** After ``max_failures`` failures from one network within the window, ``too_many``
  says the connection should be dropped (SMTP ``421``, IMAP ``* BYE``, POP3 ``-ERR``).
* **Accounts never lock out.** Failures for an account come from anywhere, including an
  attacker who only wants to keep the real user out. So the account count only ever adds a delay
  (capped at ``max_delay``) and never makes ``too_many`` true.

Networks: an IPv4 address is its own key; an IPv6 client is keyed by its /64, because one
host commonly owns a whole /64 and can pick a fresh address for every attempt. IPv4-mapped IPv6
(``::ffff:192.0.2.1``, what a dual-stack socket reports) counts as the IPv4 address. A peer
string that is no IP address (say, a Unix socket) is keyed by the string itself.

Memory is bounded: each table holds at most ``max_keys`` entries, kept in order of last failure
so that expired entries are trimmed from the front and, when full, the entry whose last failure
is oldest is evicted. Long account names are hashed, so a key's size is bounded as well.

The throttle is plain synchronous state for one event loop; it is not thread-safe.
"""

from __future__ import annotations

import hashlib
import ipaddress
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from mailpost.config import LimitsConfig

DEFAULT_MAX_KEYS = 100_000
# Beyond this exponent the delay is capped anyway; clamping avoids huge integer powers.
_MAX_EXPONENT = 62
_MAX_ACCOUNT_KEY_CHARS = 256
_MAX_RAW_PEER_CHARS = 100
_IPV6_PREFIX = 64


def ip_key(remote_ip: str) -> str:
    """The throttling key for a peer address: the IPv4 address, or the IPv6 /64."""
    try:
        address = ipaddress.ip_address(remote_ip)
    except ValueError:
        return "peer:" + remote_ip[:_MAX_RAW_PEER_CHARS]
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        host_bits = 128 - _IPV6_PREFIX
        # int() ignores any "%zone" suffix, so link-local peers group by prefix too.
        network = ipaddress.IPv6Address((int(address) >> host_bits) << host_bits)
        return f"{network}/{_IPV6_PREFIX}"
    return str(address)


def account_key(account: str) -> str:
    """The throttling key for an account name: lowercased, hashed when very long."""
    lowered = account.lower()
    if len(lowered) <= _MAX_ACCOUNT_KEY_CHARS:
        return lowered
    digest = hashlib.sha256(lowered.encode("utf-8", "surrogatepass")).hexdigest()
    return "sha256:" + digest


@dataclass(slots=True)
class _Entry:
    failures: int
    last_failure: float


class _FailureTable:
    """Failure counts per key, ordered by last failure, expiring and bounded in size."""

    def __init__(self, *, window: float, max_keys: int, clock: Callable[[], float]) -> None:
        self._window = window
        self._max_keys = max_keys
        self._clock = clock
        self._entries: OrderedDict[str, _Entry] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def failures(self, key: str) -> int:
        """Failures recorded for ``key`` within the window (0 if none or expired)."""
        entry = self._entries.get(key)
        if entry is None:
            return 0
        if self._expired(entry, self._clock()):
            del self._entries[key]
            return 0
        return entry.failures

    def record(self, key: str) -> None:
        now = self._clock()
        entry = self._entries.pop(key, None)
        if entry is None or self._expired(entry, now):
            entry = _Entry(failures=0, last_failure=now)
        entry.failures += 1
        entry.last_failure = now
        self._entries[key] = entry  # re-inserted at the end: the most recent failure
        self._trim(now)

    def clear(self, key: str) -> None:
        self._entries.pop(key, None)

    def _expired(self, entry: _Entry, now: float) -> bool:
        return now - entry.last_failure >= self._window

    def _trim(self, now: float) -> None:
        """Drop expired entries from the front, then the oldest ones beyond the size cap."""
        while self._entries:
            oldest = next(iter(self._entries.values()))
            if not self._expired(oldest, now):
                break
            self._entries.popitem(last=False)
        while len(self._entries) > self._max_keys:
            self._entries.popitem(last=False)


class AuthThrottle:
    """Growing delays and a drop signal for failed logins, per network and per account."""

    def __init__(
        self,
        *,
        base_delay: float = 2.0,
        max_delay: float = 15.0,
        window: float = 900.0,
        max_failures: int = 5,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = DEFAULT_MAX_KEYS,
    ) -> None:
        if base_delay < 0 or max_delay < 0 or window <= 0 or max_failures < 1 or max_keys < 1:
            raise ValueError("invalid throttle parameters")
        self._base_delay = base_delay
        self._max_delay = max_delay
        self._max_failures = max_failures
        self._networks = _FailureTable(window=window, max_keys=max_keys, clock=clock)
        self._accounts = _FailureTable(window=window, max_keys=max_keys, clock=clock)

    @classmethod
    def from_limits(
        cls, limits: LimitsConfig, clock: Callable[[], float] = time.monotonic
    ) -> AuthThrottle:
        """A throttle with the ``auth_*`` settings of the configuration."""
        return cls(
            base_delay=limits.auth_fail_delay,
            max_delay=limits.auth_fail_delay_max,
            window=limits.auth_fail_window,
            max_failures=limits.auth_max_failures,
            clock=clock,
        )

    def delay(self, remote_ip: str, account: str | None = None) -> float:
        """Seconds to wait before answering this attempt (0 without recent failures)."""
        failures = self._networks.failures(ip_key(remote_ip))
        if account:
            failures = max(failures, self._accounts.failures(account_key(account)))
        return self._delay_for(failures)

    def record_failure(self, remote_ip: str, account: str | None) -> None:
        """Count a failed attempt against the network and, if named, the account."""
        self._networks.record(ip_key(remote_ip))
        if account:
            self._accounts.record(account_key(account))

    def record_success(self, remote_ip: str, account: str) -> None:
        """Forget the failures of this network and this account."""
        self._networks.clear(ip_key(remote_ip))
        if account:
            self._accounts.clear(account_key(account))

    def too_many(self, remote_ip: str) -> bool:
        """True once this network has ``max_failures`` failures within the window: drop it.

        Deliberately blind to per-account failures, so that nobody can lock a user out.
        """
        return self._networks.failures(ip_key(remote_ip)) >= self._max_failures

    def tracked_keys(self) -> int:
        """Entries currently held in both tables (for monitoring and tests)."""
        return len(self._networks) + len(self._accounts)

    def _delay_for(self, failures: int) -> float:
        if failures <= 0:
            return 0.0
        exponent = min(failures - 1, _MAX_EXPONENT)
        return float(min(self._base_delay * 2**exponent, self._max_delay))
