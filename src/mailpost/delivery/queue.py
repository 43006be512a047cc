"""The outbound queue runner: claim due entries, deliver per domain, retry, bounce, expire.

Theory of operation
===================

Accepted mail for remote recipients is already durable in the store's queue
(:meth:`MailStore.deliver`). :class:`QueueRunner` turns it into SMTP deliveries:

0. **When.** :meth:`run` runs the queue at start, whenever the store announces mail due now
   (a new entry, or ``mailpost queue flush`` from another process through the doorbell: a
   :class:`~mailpost.bus.Change` of kind QUEUE on :data:`~mailpost.bus.QUEUE_CHANNEL`), and
   every :data:`POLL_INTERVAL` seconds for retries whose back-off has run out. Each claimed
   entry is attempted in a task of its own (:meth:`start_due`), at most ``concurrency`` at a
   time, so a remote host that answers slowly (or a tarpit) holds up only its own entries.
1. **Claim.** :meth:`run_once` asks the store for due entries
   (:meth:`~mailpost.store.interface.QueueStore.due_queue_entries`), which moves each one's next
   attempt forward by :data:`LEASE` in the same transaction. Nothing else takes a claimed
   entry, and if this process dies mid-attempt the entry is due again once the lease has run
   out: delivery is at-least-once across restarts (RFC 5321 §6.1).
2. **Prepare.** The stored body starts with the ``Return-Path:`` field the pipeline added for
   local delivery; it is removed (RFC 5321 §4.4: Return-Path is added by the *final* delivery
   MTA, never relayed). Line endings become CRLF and the message is DKIM-signed when a key for
   the sender's domain exists.
3. **Group.** The pending recipients are grouped by domain, and each group is one SMTP
   transaction (RFC 5321 §4.5.4.1 asks for one copy per destination host). Groups run
   concurrently, but at most ``per_domain_concurrency`` sessions go to one domain at a time,
   and at most ``concurrency`` entries are in flight overall.
4. **Destinations.** :func:`mailpost.delivery.mx.destinations`: route table, smarthost, or MX
   records in preference order (A/AAAA fallback; null MX is a permanent failure). Hosts are
   tried in order until one gives per-recipient answers. For MX destinations the recipient
   domain's MTA-STS policy (:mod:`mailpost.delivery.mtasts`, RFC 8461) applies: in ``enforce``
   mode only matching MX hosts are tried, over TLS verified against the MX name, and when none
   can be used the recipients are deferred (4.7.5), never bounced (RFC 8461 §5). Routes and
   the smarthost are the operator's choice and bypass it (``relay_tls`` governs them).
5. **Results.** 2xx: the recipient is done. 5xx: it failed for good and gets a bounce. 4xx or
   no answer (connection refused, timeout, DNS failure): it stays pending, and the entry is
   retried after an exponential back-off with jitter (``retry_base * 2**attempts``, capped at
   ``retry_max``, times a random factor in [0.5, 1) so that many entries that failed together
   do not all return together). When the entry is older than ``max_age`` the remaining
   recipients fail with status 4.4.7 (RFC 3463: delivery time expired) and are bounced; once it
   is older than ``delay_warning`` the sender gets one "delayed" report.

Bounces (:mod:`mailpost.delivery.dsn`) follow each recipient's NOTIFY (RFC 3461) and go to the
sender's INBOX when the sender resolves to local accounts (aliases and sub-addresses included),
otherwise into the queue, with a null reverse-path either way. A null sender never gets one
(RFC 5321 §4.5.5: no bounce loops). A bounce is stored before its recipients are marked
failed, so a crash in between can only duplicate it, never lose it.

The clock, the resolver, the SMTP client and the random source are injected, so the tests run
through days of retries without waiting.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Protocol

from mailpost.bus import QUEUE_CHANNEL, ChangeBus
from mailpost.config import Config
from mailpost.delivery import dsn, mtasts, mx, outbound
from mailpost.delivery.outbound import Credentials, Reply, SessionError, TLSPolicy, Transaction
from mailpost.delivery.resolve import RecipientResolver, Refusal
from mailpost.mailauth.dns import SystemResolver
from mailpost.store.errors import StoreError
from mailpost.store.interface import MailStore
from mailpost.store.types import (
    DeliveryTarget,
    OutboundEnvelope,
    OutboundRecipient,
    QueueEntry,
)

log = logging.getLogger(__name__)

Signer = Callable[[bytes, str, Path], bytes]
_signer: Signer | None
try:
    from mailpost.mailauth.dkim import sign as _dkim_sign
except ImportError:  # signing arrives with the mail authentication package
    _signer = None
else:
    _signer = _dkim_sign

LEASE = timedelta(minutes=15)
POLL_INTERVAL = 5.0
# Fields folded onto following lines start with white space (RFC 5322 §2.2.3).
_RETURN_PATH = re.compile(rb"\AReturn-Path:[^\n]*\n(?:[ \t][^\n]*\n)*", re.IGNORECASE)


class Clock(Protocol):
    def __call__(self) -> datetime: ...


SendFunction = Callable[..., Awaitable[dict[str, Reply]]]


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class Outcome:
    """One recipient's result of one attempt."""

    kind: str                  # "delivered", "failed" (permanent) or "deferred"
    status: str
    diagnostic: str | None = None
    remote_mta: str | None = None


def strip_return_path(body: bytes) -> bytes:
    """Remove the Return-Path field that the pipeline put first (with any folded lines)."""
    return _RETURN_PATH.sub(b"", body, count=1)


def backoff(attempts: int, base: float, cap: float, rand: Callable[[], float]) -> timedelta:
    """Delay before the next attempt after ``attempts`` earlier ones (see module docstring)."""
    delay = min(cap, base * 2 ** min(attempts, 32))
    return timedelta(seconds=delay * (0.5 + rand() / 2))


def domain_of(address: str) -> str:
    return address.rpartition("@")[2].lower()


def group_by_domain(recipients: Sequence[OutboundRecipient]) -> dict[str, list[OutboundRecipient]]:
    groups: dict[str, list[OutboundRecipient]] = {}
    for recipient in recipients:
        groups.setdefault(domain_of(recipient.address), []).append(recipient)
    return groups


def _session_status(exc: SessionError) -> str:
    """The DSN status of a session that failed before per-recipient replies: the server's
    own enhanced code when it gave one (RFC 3463), else 4.4.1 (no answer) or 5.0.0."""
    if exc.status is not None:
        return exc.status
    if exc.reply is not None:
        return dsn.status_of(exc.reply.code, exc.reply.text)
    return "5.0.0" if exc.permanent else "4.4.1"


def _outcome(reply: Reply, host: str) -> Outcome:
    kind = "delivered" if reply.positive else "failed" if reply.permanent else "deferred"
    status = "2.0.0" if reply.positive else dsn.status_of(reply.code, reply.text)
    return Outcome(kind, status, str(reply).replace("\n", " "), host)


class QueueRunner:
    """Delivers the store's outbound queue; :meth:`run` until cancelled."""

    def __init__(self, store: MailStore, config: Config, *,
                 resolver: mx.Resolver | None = None, clock: Clock = utc_now,
                 send: SendFunction = outbound.send,
                 rand: Callable[[], float] = random.random,
                 signer: Signer | None = _signer,
                 mta_sts: mtasts.PolicySource | None = None) -> None:
        self.store = store
        self.config = config
        self.settings = config.delivery
        self.resolver = resolver or mx.DNSResolver(config.dns.nameservers)
        # MTA-STS discovery must see the DNS the MX lookups see: a runner given its own MX
        # resolver gets MTA-STS only through an explicit policy source.
        if mta_sts is None and resolver is None and self.settings.mta_sts:
            mta_sts = mtasts.policy_cache(SystemResolver(config.dns.nameservers),
                                          self.settings.mta_sts_ca_file, store)
        self.mta_sts = mta_sts
        self.clock = clock
        self.send = send
        self.rand = rand
        self.signer = signer
        self._wake = asyncio.Event()
        # Per-domain session limits, kept only while some session for the domain exists.
        self._domain_limits: dict[str, tuple[asyncio.Semaphore, int]] = {}
        # Entries being attempted here: an attempt that outlives its lease is not started twice.
        self._in_flight: set[int] = set()
        # The attempts :meth:`start_due` started and nobody awaits (cancelled when run ends).
        self._attempts: set[asyncio.Task[None]] = set()

    def wake(self) -> None:
        """Look at the queue now rather than at the next poll (``queue flush``, new mail)."""
        self._wake.set()

    async def run(self, poll_interval: float = POLL_INTERVAL,
                  bus: ChangeBus | None = None) -> None:
        """Attempt what is due, then sleep until the poll interval has passed (retries come
        due with time) or ``bus`` announces newly queued or flushed mail."""
        doorbell = asyncio.create_task(self._wake_on_announcements(bus)) if bus else None
        try:
            while True:
                try:
                    await self.start_due()
                except StoreError as exc:  # the store is closing or failing: try again later
                    log.warning("queue run failed: %s", exc)
                except Exception:
                    # A bug must not stop all outbound mail; leases bring the entries back.
                    log.exception("queue run failed")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), poll_interval)
                self._wake.clear()
        finally:
            if doorbell is not None:
                doorbell.cancel()
            # Attempts cut short here are retried once their lease runs out.
            attempts = list(self._attempts)
            for attempt in attempts:
                attempt.cancel()
            await asyncio.gather(*attempts, return_exceptions=True)

    async def start_due(self) -> list[asyncio.Task[None]]:
        """Claim what is due, up to the free share of ``concurrency``, and start attempting it
        without waiting: a remote host that answers slowly holds up only its own entries, and
        mail queued meanwhile leaves at once. Each finished attempt looks again (an entry left
        unclaimed for want of room gets it). Returns the attempts started."""
        room = self.settings.concurrency - len(self._in_flight)
        if room <= 0:
            return []
        now = self.clock()
        entries = await self.store.due_queue_entries(now, room, now + LEASE)
        started: list[asyncio.Task[None]] = []
        for entry in entries:
            if entry.id in self._in_flight:  # its lease ran out while it is still being tried
                continue
            self._in_flight.add(entry.id)  # now, so that the next claim leaves it alone
            attempt = asyncio.create_task(self._attempt_safely(entry),
                                          name=f"queue-entry-{entry.id}")
            self._attempts.add(attempt)
            attempt.add_done_callback(functools.partial(self._attempt_finished, entry.id))
            started.append(attempt)
        return started

    def _attempt_finished(self, entry_id: int, attempt: asyncio.Task[None]) -> None:
        """Also when the attempt was cancelled before it ran: the entry is free again."""
        self._in_flight.discard(entry_id)
        self._attempts.discard(attempt)
        self.wake()

    async def _wake_on_announcements(self, bus: ChangeBus) -> None:
        with bus.subscribe(QUEUE_CHANNEL) as announcements:
            while True:
                await announcements.wait()
                self.wake()

    async def run_once(self) -> int:
        """Attempt every entry due now and wait for the attempts (tests, and callers that
        drive the queue themselves); return how many were attempted."""
        started = await self.start_due()
        await asyncio.gather(*started)
        return len(started)

    async def _attempt_safely(self, entry: QueueEntry) -> None:
        try:
            await self.attempt(entry)
        except StoreError as exc:  # the lease brings the entry back later
            log.warning("queue entry %d: %s", entry.id, exc)
        except Exception:  # one broken entry must not hold up the others
            log.exception("queue entry %d: delivery attempt failed", entry.id)

    async def attempt(self, entry: QueueEntry) -> None:
        body = self._prepare(await self.store.blobs.read(entry.blob), entry)
        groups = group_by_domain(entry.recipients)
        results = await asyncio.gather(*(self._deliver_domain(entry, domain, recipients, body)
                                         for domain, recipients in groups.items()))
        outcomes: dict[str, Outcome] = {}
        for result in results:
            outcomes.update(result)
        for recipient in entry.recipients:  # a server that skipped one: try it again later
            outcomes.setdefault(recipient.address,
                                Outcome("deferred", "4.0.0", "no reply for this recipient"))
        await self._settle(entry, body, outcomes)

    def _prepare(self, stored: bytes, entry: QueueEntry) -> bytes:
        body = outbound.canonical_crlf(strip_return_path(stored))
        if self.signer is None:
            return body
        domain = domain_of(entry.submitter or entry.sender) or self.config.hostname
        try:
            return self.signer(body, domain, self.config.data_dir)
        except Exception:  # a signing fault must not stop delivery
            log.exception("DKIM signing failed for queue entry %d", entry.id)
            return body

    # -- one domain ----------------------------------------------------------------------------

    async def _deliver_domain(self, entry: QueueEntry, domain: str,
                              recipients: list[OutboundRecipient],
                              body: bytes) -> dict[str, Outcome]:
        limit, users = self._domain_limits.get(
            domain, (asyncio.Semaphore(self.settings.per_domain_concurrency), 0))
        self._domain_limits[domain] = (limit, users + 1)
        try:
            async with limit:
                return await self._try_destinations(entry, domain, recipients, body)
        finally:
            limit, users = self._domain_limits[domain]
            if users == 1:
                del self._domain_limits[domain]
            else:
                self._domain_limits[domain] = (limit, users - 1)

    async def _try_destinations(self, entry: QueueEntry, domain: str,
                                recipients: list[OutboundRecipient],
                                body: bytes) -> dict[str, Outcome]:
        settings = self.settings
        try:
            targets = await mx.destinations(domain, self.resolver, settings.routes,
                                            settings.relay)
        except mx.PermanentDNSError as exc:
            # RFC 7505 §4.2: 5.1.10 for a null MX; 5.1.2 for a domain that does not exist.
            status = "5.1.10" if "null MX" in str(exc) else "5.1.2"
            return _all(recipients, Outcome("failed", status, str(exc)))
        except mx.TemporaryDNSError as exc:
            return _all(recipients, Outcome("deferred", "4.4.3", str(exc)))
        route = await self._mta_sts_plan(domain, targets)
        if not route.destinations:  # RFC 8461 §5: a policy failure is never permanent
            return _all(recipients, Outcome("deferred", "4.7.5",
                                            f"no MX host of {domain} matches its MTA-STS policy"))
        transaction = Transaction(entry.sender, tuple(recipients), body, entry.ret, entry.envid)
        error = Outcome("deferred", "4.4.1", f"no destination for {domain}")
        for target in route.destinations:
            try:
                replies = await self.send(target, transaction, self.config.hostname,
                                          policy=route.tls or self._policy(domain),
                                          credentials=self._credentials(domain),
                                          source_address=self.settings.source_address)
            except SessionError as exc:
                kind = "failed" if exc.permanent else "deferred"
                error = Outcome(kind, _session_status(exc), str(exc), target.tls_name)
                if exc.permanent:
                    break
                continue
            return {address: _outcome(reply, target.tls_name)
                    for address, reply in replies.items()}
        return _all(recipients, error)

    async def _mta_sts_plan(self, domain: str, targets: list[mx.Destination]) -> mtasts.Plan:
        if self.mta_sts is None or self._configured_route(domain):
            return mtasts.Plan(targets)
        return mtasts.plan(domain, await self.mta_sts.policy_for(domain), targets)

    def _configured_route(self, domain: str) -> bool:
        return domain in self.settings.routes or self.settings.relay is not None

    def _policy(self, domain: str) -> TLSPolicy:
        mode = self.settings.relay_tls if self._configured_route(domain) else "opportunistic"
        return TLSPolicy(required=mode != "opportunistic", verify=mode == "verify")

    def _credentials(self, domain: str) -> Credentials | None:
        settings = self.settings
        if domain in settings.routes or settings.relay is None:
            return None
        if settings.relay_username is None or settings.relay_password is None:
            return None
        return Credentials(settings.relay_username, settings.relay_password)

    # -- after the attempt ---------------------------------------------------------------------

    async def _settle(self, entry: QueueEntry, body: bytes,
                      outcomes: dict[str, Outcome]) -> None:
        now = self.clock()
        by_address = {recipient.address: recipient for recipient in entry.recipients}
        delivered = [a for a, o in outcomes.items() if o.kind == "delivered"]
        failed = {a: o for a, o in outcomes.items() if o.kind == "failed"}
        deferred = {a: o for a, o in outcomes.items() if o.kind == "deferred"}
        expired = now - entry.created >= timedelta(seconds=self.settings.max_age)
        if expired:
            failed |= {a: Outcome("failed", "4.4.7", f"expired; last error: {o.diagnostic}",
                                  o.remote_mta) for a, o in deferred.items()}
            deferred = {}
        await self._bounce(entry, body, by_address, failed, "failed", now)
        remaining = len(entry.recipients)
        if delivered:
            remaining = await self.store.complete_recipients(entry.id, delivered, "delivered")
        for address, outcome in failed.items():
            remaining = await self.store.complete_recipients(
                entry.id, [address], "failed", outcome.diagnostic)
        if remaining == 0 or not deferred:
            return
        await self._warn_if_delayed(entry, body, by_address, deferred, now)
        last_error = next(iter(deferred.values())).diagnostic
        delay = backoff(entry.attempts, self.settings.retry_base, self.settings.retry_max,
                        self.rand)
        await self.store.record_attempt(entry.id, now + delay, last_error)

    async def _warn_if_delayed(self, entry: QueueEntry, body: bytes,
                               by_address: dict[str, OutboundRecipient],
                               deferred: dict[str, Outcome], now: datetime) -> None:
        warning = self.settings.delay_warning
        if warning <= 0 or now - entry.created < timedelta(seconds=warning) or not entry.sender:
            return
        if not any(dsn.wants_report(by_address[a], "delayed") for a in deferred):
            return
        if await self.store.claim_delay_warning(entry.id):
            until = entry.created + timedelta(seconds=self.settings.max_age)
            await self._bounce(entry, body, by_address, deferred, "delayed", now, until)

    async def _bounce(self, entry: QueueEntry, body: bytes,
                      by_address: dict[str, OutboundRecipient], outcomes: dict[str, Outcome],
                      action: str, now: datetime, retry_until: datetime | None = None) -> None:
        if not entry.sender:  # RFC 5321 §4.5.5: never report on a report
            return
        reports = [dsn.RecipientReport(by_address[a], o.status, o.diagnostic, o.remote_mta)
                   for a, o in outcomes.items()
                   if a in by_address and dsn.wants_report(by_address[a], action)]
        if not reports:
            return
        message = dsn.build_report(entry, body, reports, action=action,
                                   hostname=self.config.hostname, now=now,
                                   retry_until=retry_until)
        await deliver_report(self.store, self.config.hostname, entry.sender, message)


def _all(recipients: Sequence[OutboundRecipient], outcome: Outcome) -> dict[str, Outcome]:
    return {recipient.address: outcome for recipient in recipients}


async def deliver_report(store: MailStore, hostname: str, sender: str, message: bytes) -> None:
    """Deliver a report to ``sender`` as the SMTP listener would: local accounts (aliases and
    ``+detail`` resolved) get it in their INBOX, remote addresses through the queue, with a
    null reverse-path either way. A sender that no longer resolves gets nothing."""
    resolution = await RecipientResolver(store, hostname).resolve(sender, may_relay=True)
    if isinstance(resolution, Refusal):
        log.warning("dropping a delivery report for <%s>: %s", sender, resolution.value)
        return
    writer = store.blobs.writer()
    try:
        writer.write(b"Return-Path: <>\r\n" + message)
        blob = await writer.finish()
    except BaseException:
        writer.abort()
        raise
    targets = [DeliveryTarget(account_id) for account_id in resolution.accounts]
    remote = tuple(OutboundRecipient(address, notify="NEVER") for address in resolution.remote)
    await store.deliver(blob, targets, OutboundEnvelope("", remote) if remote else None)
