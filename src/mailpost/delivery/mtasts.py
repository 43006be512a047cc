"""MTA-STS (RFC 8461): learn which MX hosts of a domain must be reached over verified TLS.

Theory of operation
===================

A domain announces a policy with a TXT record at ``_mta-sts.<domain>`` (``v=STSv1; id=...``,
RFC 8461 §3.1) and serves it at ``https://mta-sts.<domain>/.well-known/mta-sts.txt`` (§3.2).
:class:`PolicyCache` turns a recipient domain into a :class:`Policy` or ``None``:

1. **Discovery.** The TXT records are looked up (through the injectable
   :class:`mailpost.mailauth.dns.Resolver`, so ``[dns] nameservers`` governs it). Records not
   starting with ``v=STSv1;`` are discarded; anything but exactly one valid record means "no
   live policy" (§3.1).
2. **Cache.** A cached policy younger than its ``max_age`` whose ``id`` equals the live record's
   is used as is. A policy whose id changed is fetched again. When DNS has no usable record the
   unexpired cached policy still applies (§3.1, §3.3: a vanished record is not a removal; a
   removal is ``mode: none``).
3. **Fetch.** HTTPS GET with no redirects, no HTTP caching, a time-out and a 64 KiB bound
   (§3.3), in a worker thread. The policy host's address comes from the same resolver, and the
   connection goes to that address while TLS verifies the certificate against the policy host
   name (system CAs plus ``[delivery] mta_sts_ca_file``). The media type must be text/plain.
   A failed fetch is not retried for the same id within :data:`FETCH_RETRY_AFTER` (§3.3 asks
   for five minutes or more); meanwhile the cached policy, if unexpired, applies, otherwise
   delivery proceeds as if the domain had no policy.

:func:`plan` applies a policy to the destinations :func:`mailpost.delivery.mx.destinations`
found (§5): ``enforce`` keeps only MX hosts matching a pattern (§4.1) and requires TLS verified
against the MX host name (§4.2); ``testing`` delivers as before and only logs the mismatches;
``none`` is no policy.

The cache is what protects a domain's mail once its policy is known (§5.1: an attacker who can
block the policy fetch and the TXT lookup must not be able to turn enforcement off), so it must
outlive restarts: every fetched policy is also written to the store
(:meth:`~mailpost.store.interface.QueueStore.put_mta_sts_policy`), and a domain missing from
memory is looked up there before anything else, once per process.
"""

from __future__ import annotations

import asyncio
import http.client
import logging
import re
import socket
import ssl
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

from mailpost.delivery.mx import Destination
from mailpost.delivery.outbound import TLSPolicy
from mailpost.mailauth.dns import DNSTempError, Resolver
from mailpost.store.errors import StoreError
from mailpost.store.types import StoredPolicy

log = logging.getLogger(__name__)

WELL_KNOWN_PATH = "/.well-known/mta-sts.txt"
MAX_POLICY_SIZE = 64 * 1024          # RFC 8461 §3.3 suggested bound
MAX_MAX_AGE = 31557600               # RFC 8461 §3.2
FETCH_TIMEOUT = 30.0                 # §3.3 suggests at most one minute
FETCH_RETRY_AFTER = timedelta(minutes=5)
MODES = frozenset({"enforce", "testing", "none"})

_TXT_START = re.compile(r"\Av=STSv1[ \t]*;")
_TXT_ID = re.compile(r"\A[A-Za-z0-9]{1,32}\Z")
_EXT_NAME = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9_.-]{0,31}\Z")
_EXT_VALUE = re.compile(r"\A[\x21-\x3a\x3c\x3e-\x7e]+\Z")
_POLICY_LINE = re.compile(r"\A([A-Za-z0-9][A-Za-z0-9_.-]{0,31}):[ \t]*(.*?)[ \t]*\Z")
_LABEL = re.compile(r"\A[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\Z")
_MAX_AGE = re.compile(r"\A[0-9]{1,10}\Z")


class PolicyError(Exception):
    """A TXT record or policy file that does not follow RFC 8461 §3."""


@dataclass(frozen=True, slots=True)
class Policy:
    mode: str                      # "enforce", "testing" or "none"
    mx: tuple[str, ...]            # patterns: "mail.example.com" or "*.example.net"
    max_age: int                   # seconds

    def allows(self, host: str) -> bool:
        """RFC 8461 §4.1: does the MX host name match one of the patterns?"""
        return any(mx_matches(pattern, host) for pattern in self.mx)


def _normalise(name: str) -> str:
    return name.strip().rstrip(".").lower()


def mx_matches(pattern: str, host: str) -> bool:
    """RFC 8461 §4.1: "*." matches exactly one whole left-most label, nothing else."""
    pattern, host = _normalise(pattern), _normalise(host)
    if not pattern.startswith("*."):
        return pattern == host
    label, _, rest = host.partition(".")
    return bool(label) and label != "*" and rest == pattern[2:]


def _valid_pattern(pattern: str) -> bool:
    name = pattern.removeprefix("*.")
    labels = _normalise(name).split(".")
    return len(labels) >= 2 and all(_LABEL.match(label) for label in labels)


def parse_txt(records: Sequence[str]) -> str:
    """The policy ``id`` of the one ``v=STSv1`` record among ``records`` (RFC 8461 §3.1).

    Raises:
        PolicyError: none or several such records, or one that breaks the grammar.
    """
    candidates = [record for record in records if _TXT_START.match(record)]
    if len(candidates) != 1:
        raise PolicyError(f"expected one v=STSv1 record, found {len(candidates)}")
    fields: dict[str, str] = {}
    for part in candidates[0].split(";")[1:]:
        part = part.strip(" \t")
        if not part:
            continue  # the optional trailing delimiter
        name, equals, value = part.partition("=")
        if not equals or not _EXT_NAME.match(name) or not _EXT_VALUE.match(value):
            raise PolicyError(f"malformed field {part!r}")
        fields.setdefault(name, value)  # §3.2: duplicates after the first are ignored
    record_id = fields.get("id")
    if record_id is None or not _TXT_ID.match(record_id):
        raise PolicyError("missing or malformed id")
    return record_id


def parse_policy(text: str) -> Policy:
    """Parse a policy file (RFC 8461 §3.2). Unknown and malformed lines are ignored; the
    first of duplicated non-``mx`` fields wins; ``mx`` values that are not domain patterns
    are dropped (that can only narrow what ``enforce`` allows).

    Raises:
        PolicyError: a required field is missing or invalid.
    """
    fields: dict[str, str] = {}
    patterns: list[str] = []
    for line in text.split("\n"):
        match = _POLICY_LINE.match(line.removesuffix("\r"))
        if match is None:
            continue
        name, value = match.groups()
        if name == "mx":
            if _valid_pattern(value):
                patterns.append(_normalise(value))
        else:
            fields.setdefault(name, value)
    if fields.get("version") != "STSv1":
        raise PolicyError("version is not STSv1")
    mode = fields.get("mode", "")
    if mode not in MODES:
        raise PolicyError(f"invalid mode {mode!r}")
    max_age = fields.get("max_age", "")
    if not _MAX_AGE.match(max_age):
        raise PolicyError(f"invalid max_age {max_age!r}")
    if not patterns and mode != "none":
        raise PolicyError("no mx pattern")
    return Policy(mode, tuple(patterns), min(int(max_age), MAX_MAX_AGE))


# -- fetching --------------------------------------------------------------------------------


class _AddressedHTTPSConnection(http.client.HTTPSConnection):
    """Connects to a resolved address; Host header and certificate check use the name."""

    def __init__(self, name: str, address: str, port: int, context: ssl.SSLContext,
                 timeout: float) -> None:
        super().__init__(name, port, timeout=timeout, context=context)
        self._address = address
        self._tls = context

    def connect(self) -> None:
        raw = socket.create_connection((self._address, self.port), self.timeout)
        try:
            self.sock = self._tls.wrap_socket(raw, server_hostname=self.host)
        except BaseException:
            raw.close()
            raise


class HTTPSFetcher:
    """Fetches a domain's policy text (RFC 8461 §3.3); blocking, so run it in a thread."""

    def __init__(self, resolver: Resolver, *, ca_file: str | None = None, port: int = 443,
                 timeout: float = FETCH_TIMEOUT) -> None:
        self.resolver = resolver
        self.port = port
        self.timeout = timeout
        self.context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
        if ca_file is not None:  # in addition to the system's CAs
            self.context.load_verify_locations(cafile=ca_file)

    def __call__(self, domain: str) -> str:
        """The policy text of ``domain``.

        Raises:
            PolicyError, OSError, ssl.SSLError, http.client.HTTPException, DNSTempError.
        """
        host = f"mta-sts.{domain}"
        addresses = self.resolver.lookup(host, "A") + self.resolver.lookup(host, "AAAA")
        if not addresses:
            raise PolicyError(f"{host} has no address")
        conn = _AddressedHTTPSConnection(host, addresses[0], self.port, self.context,
                                         self.timeout)
        try:
            # http.client never follows redirects, and nothing here caches (§3.3).
            conn.request("GET", WELL_KNOWN_PATH, headers={"Cache-Control": "no-cache"})
            response = conn.getresponse()
            if response.status != 200:
                raise PolicyError(f"{host}: HTTP status {response.status}")
            media_type = (response.getheader("Content-Type") or "").split(";")[0]
            if media_type.strip().lower() != "text/plain":
                raise PolicyError(f"{host}: media type {media_type!r} is not text/plain")
            body = response.read(MAX_POLICY_SIZE + 1)
        finally:
            conn.close()
        if len(body) > MAX_POLICY_SIZE:
            raise PolicyError(f"{host}: policy larger than {MAX_POLICY_SIZE} octets")
        return body.decode("utf-8")


# -- the cache -------------------------------------------------------------------------------


class PolicySource(Protocol):
    async def policy_for(self, domain: str) -> Policy | None:
        """The policy to apply to ``domain`` now; None when it has none."""


class PolicyStore(Protocol):
    """Where policies outlive the process (the mail store implements it)."""

    async def get_mta_sts_policy(self, domain: str) -> StoredPolicy | None: ...

    async def put_mta_sts_policy(self, policy: StoredPolicy) -> None: ...


# Domains looked up in the store at most once per process; past this many the memory of which
# were looked up starts over (a few extra reads, never a wrong answer).
_MAX_LOOKED_UP = 10_000


@dataclass(frozen=True, slots=True)
class _Cached:
    policy_id: str
    policy: Policy
    expires: datetime


def _utc_now() -> datetime:
    return datetime.now(UTC)


class PolicyCache:
    """:class:`PolicySource` with discovery, fetching and an in-memory cache (module doc)."""

    def __init__(self, resolver: Resolver, fetch: Callable[[str], str], *,
                 clock: Callable[[], datetime] = _utc_now,
                 store: PolicyStore | None = None) -> None:
        self.resolver = resolver
        self.fetch = fetch
        self.clock = clock
        self.store = store
        self._cache: dict[str, _Cached] = {}
        self._failed: dict[tuple[str, str], datetime] = {}
        self._looked_up: set[str] = set()

    async def policy_for(self, domain: str) -> Policy | None:
        domain = _normalise(domain)
        now = self.clock()
        cached = self._cache.get(domain) or await self._stored(domain)
        if cached is not None and cached.expires <= now:
            del self._cache[domain]
            cached = None
        live_id = await self._live_id(domain)
        if live_id is None or (cached is not None and cached.policy_id == live_id):
            return cached.policy if cached is not None else None
        fetched = await self._fetch(domain, live_id, now)
        return fetched.policy if fetched is not None else cached.policy if cached else None

    async def _live_id(self, domain: str) -> str | None:
        try:
            records = await asyncio.to_thread(self.resolver.lookup, f"_mta-sts.{domain}", "TXT")
            return parse_txt(records)
        except (DNSTempError, PolicyError):
            return None

    async def _fetch(self, domain: str, policy_id: str, now: datetime) -> _Cached | None:
        failed_at = self._failed.get((domain, policy_id))
        if failed_at is not None and now - failed_at < FETCH_RETRY_AFTER:
            return None
        try:
            text = await asyncio.to_thread(self.fetch, domain)
            policy = parse_policy(text)
        except (PolicyError, OSError, ssl.SSLError, http.client.HTTPException,
                DNSTempError, UnicodeDecodeError) as exc:
            # §3.3: let the operator see refresh failures.
            log.warning("MTA-STS policy fetch for %s (id %s) failed: %s", domain, policy_id, exc)
            # Forget failures old enough to be retried anyway, so the table stays small.
            self._failed = {key: at for key, at in self._failed.items()
                            if now - at < FETCH_RETRY_AFTER}
            self._failed[(domain, policy_id)] = now
            return None
        self._failed.pop((domain, policy_id), None)
        entry = _Cached(policy_id, policy, now + timedelta(seconds=policy.max_age))
        self._cache[domain] = entry
        await self._keep(domain, entry, text)
        return entry

    async def _stored(self, domain: str) -> _Cached | None:
        """The policy the store kept for ``domain`` (first time this process asks)."""
        if self.store is None or domain in self._looked_up:
            return None
        if len(self._looked_up) >= _MAX_LOOKED_UP:
            self._looked_up.clear()
        self._looked_up.add(domain)
        try:
            stored = await self.store.get_mta_sts_policy(domain)
            if stored is None:
                return None
            entry = _Cached(stored.policy_id, parse_policy(stored.text), stored.expires)
        except (StoreError, PolicyError) as exc:
            log.warning("stored MTA-STS policy of %s unusable: %s", domain, exc)
            return None
        self._cache[domain] = entry
        return entry

    async def _keep(self, domain: str, entry: _Cached, text: str) -> None:
        if self.store is None:
            return
        try:
            await self.store.put_mta_sts_policy(
                StoredPolicy(domain, entry.policy_id, text, entry.expires))
        except StoreError as exc:  # memory still has it; a restart would fetch it again
            log.warning("could not store the MTA-STS policy of %s: %s", domain, exc)


def policy_cache(resolver: Resolver, ca_file: str | None = None,
                 store: PolicyStore | None = None) -> PolicyCache:
    """The production cache: HTTPS on port 443 through ``resolver``, kept in ``store``."""
    return PolicyCache(resolver, HTTPSFetcher(resolver, ca_file=ca_file), store=store)


# -- application -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Plan:
    """Where to try, and the TLS policy to use there (None: the runner's usual one)."""

    destinations: list[Destination]
    tls: TLSPolicy | None = None


def plan(domain: str, policy: Policy | None, targets: list[Destination]) -> Plan:
    """Apply ``policy`` to the MX ``targets`` of ``domain`` (RFC 8461 §5)."""
    if policy is None or policy.mode == "none":
        return Plan(targets)
    allowed = [target for target in targets if policy.allows(target.tls_name)]
    if policy.mode == "testing":
        for target in targets:
            if target not in allowed:
                log.warning("MTA-STS (testing) for %s: MX %s does not match the policy",
                            domain, target.tls_name)
        return Plan(targets)
    return Plan(allowed, TLSPolicy(required=True, verify=True))
