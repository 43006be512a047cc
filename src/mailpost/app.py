"""Wiring: open the store, make TLS ready, start the listeners, stop cleanly.

``Server`` is what ``mailpost serve`` runs and what the end-to-end tests start in-process (on
port 0). It owns the only long-lived objects: the store, the change bus, the authenticator and
its throttle, the per-IP connection limiter, the listeners, and the outbound queue runner (one
task, cancelled before the store closes; an attempt cut short is retried after its lease).

``serve`` (the ``mailpost serve`` process, not the in-process ``Server`` of the tests) also
adjusts two process-wide defaults for a server of many idle connections: the C allocator's
threshold for large blocks before the first login, and the garbage collector once the
listeners are up (see ``runtime``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import ssl
import sys
from dataclasses import dataclass, field

from mailpost import doorbell
from mailpost.admin import ops
from mailpost.auth.authenticator import Authenticator
from mailpost.auth.ratelimit import AuthThrottle
from mailpost.bus import LocalBus
from mailpost.config import Config, parse_host_port
from mailpost.delivery.queue import POLL_INTERVAL, QueueRunner
from mailpost.delivery.resolve import RecipientResolver
from mailpost.imap.recent import RecentRegistry
from mailpost.imap.session import IMAPServices, IMAPSession
from mailpost.net import tls
from mailpost.net.listener import (
    AccountSessionLimiter,
    Connection,
    ConnectionLimiter,
    Handler,
    ListenerSpec,
    SessionTasks,
    bound_addresses,
    end_sessions,
    start_listener,
)
from mailpost.pop3.session import POP3Services, POP3Session
from mailpost.runtime import (
    freeze_startup_objects,
    return_large_blocks_to_system,
    space_out_full_collections,
)
from mailpost.smtp.session import Mode, SMTPServices, SMTPSession
from mailpost.store import open_store
from mailpost.store.errors import StoreError
from mailpost.store.interface import MailStore

log = logging.getLogger("mailpost")

IMAP_BUSY = b"* BYE [UNAVAILABLE] Too many connections from your address\r\n"
SMTP_BUSY = b"421 4.7.0 Too many connections from your address, try again later\r\n"
POP3_BUSY = b"-ERR [SYS/TEMP] too many connections\r\n"  # RFC 3206 SYS/TEMP


@dataclass
class Server:
    config: Config
    bus: LocalBus = field(default_factory=LocalBus)
    store: MailStore | None = None
    listeners: dict[str, list[asyncio.Server]] = field(default_factory=dict)
    first_run: tuple[str, str] | None = None
    queue_runner: QueueRunner | None = None
    queue_poll_interval: float = POLL_INTERVAL
    # Run the queue as soon as mail is queued or flushed (bus announcements), not only on the
    # poll; tests that drive the runner themselves turn it off.
    queue_wake: bool = True
    _queue_task: asyncio.Task[None] | None = None
    # Changes committed by other processes (the mailpost command) arrive here (see doorbell).
    _doorbell: doorbell.DoorbellListener | None = None
    # Open connections: closing the listeners does not end them, stop() does.
    _sessions: SessionTasks = field(default_factory=set)
    # IMAP4rev1 \Recent marks, written to the store when the server stops (see imap.recent).
    _recent: RecentRegistry = field(default_factory=RecentRegistry)

    async def start(self) -> None:
        config = self.config
        config.data_dir.mkdir(parents=True, exist_ok=True)
        tls_context = self._tls_context()
        self.store = await open_store(config.data_dir, self.bus)
        self._doorbell = doorbell.listen(config.data_dir, self.bus)
        self.first_run = await ops.ensure_first_run(self.store)
        limits = config.limits
        throttle = AuthThrottle.from_limits(limits)
        authenticator = Authenticator(self.store, throttle)
        services = SMTPServices(
            config=config,
            store=self.store,
            resolver=RecipientResolver(self.store, config.hostname),
            authenticator=authenticator,
            throttle=throttle,
            tls_context=tls_context,
        )
        # One count of logged-in sessions per account, shared by IMAP and POP3.
        account_sessions = AccountSessionLimiter(limits.max_connections_per_user)
        pop3 = POP3Services(config=config, store=self.store, authenticator=authenticator,
                            throttle=throttle, tls_context=tls_context,
                            account_sessions=account_sessions)
        imap = IMAPServices(config=config, store=self.store, bus=self.bus,
                            authenticator=authenticator, throttle=throttle,
                            tls_context=tls_context, account_sessions=account_sessions,
                            recent=self._recent)
        limiter = ConnectionLimiter(limits.max_connections_per_ip)
        for spec in self._listener_specs(services, pop3, imap, tls_context):
            self.listeners[spec.name] = await start_listener(spec, limiter, self._sessions)
            for host, port in bound_addresses(self.listeners[spec.name]):
                log.info("listening %s %s:%d", spec.name, host, port)
        self.queue_runner = QueueRunner(self.store, config)
        self._queue_task = asyncio.create_task(
            self.queue_runner.run(self.queue_poll_interval, self.bus if self.queue_wake else None),
            name="outbound-queue")

    def _tls_context(self) -> ssl.SSLContext:
        config = self.config
        if config.tls.cert is None:
            tls.ensure_certificate(config.cert_path, config.key_path, config.hostname)
        return tls.server_context(config.cert_path, config.key_path)

    def _listener_specs(self, smtp: SMTPServices, pop3: POP3Services, imap: IMAPServices,
                        tls_context: ssl.SSLContext) -> list[ListenerSpec]:
        """Every configured listener: (name, addresses, implicit TLS, session, busy reply)."""
        listen = self.config.listen

        def smtp_session(mode: Mode) -> Handler:
            async def run(connection: Connection) -> None:
                await SMTPSession(connection, mode, smtp).run()
            return run

        async def pop3_session(connection: Connection) -> None:
            await POP3Session(connection, pop3).run()

        async def imap_session(connection: Connection) -> None:
            await IMAPSession(connection, imap).run()

        table: list[tuple[str, tuple[str, ...], ssl.SSLContext | None, Handler, bytes]] = [
            ("smtp", listen.smtp, None, smtp_session(Mode.MX), SMTP_BUSY),
            ("submission", listen.submission, None, smtp_session(Mode.SUBMISSION), SMTP_BUSY),
            ("submissions", listen.submissions, tls_context, smtp_session(Mode.SUBMISSION),
             SMTP_BUSY),
            ("pop3", listen.pop3, None, pop3_session, POP3_BUSY),
            ("pop3s", listen.pop3s, tls_context, pop3_session, POP3_BUSY),
            ("imap", listen.imap, None, imap_session, IMAP_BUSY),
            ("imaps", listen.imaps, tls_context, imap_session, IMAP_BUSY),
        ]
        timeout = self.config.limits.tls_handshake_timeout
        return [
            ListenerSpec(name, tuple(parse_host_port(a, f"listen.{name}") for a in addresses),
                         handler, implicit, busy, timeout)
            for name, addresses, implicit, handler, busy in table if addresses
        ]

    def port(self, name: str) -> int:
        """The bound port of a listener (tests bind port 0)."""
        return bound_addresses(self.listeners[name])[0][1]

    async def stop(self) -> None:
        if self._queue_task is not None:
            self._queue_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._queue_task
            self._queue_task = None
        for servers in self.listeners.values():
            for server in servers:
                server.close()
        for servers in self.listeners.values():
            for server in servers:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(server.wait_closed(), 5)
        self.listeners.clear()
        await end_sessions(self._sessions)
        if self._doorbell is not None:
            self._doorbell.close()
            self._doorbell = None
        if self.store is not None:
            try:
                await self.store.keep_recent_uids(self._recent.marks())
            except StoreError as exc:  # the next sessions see those messages as recent again
                log.warning("could not keep the \\Recent marks: %s", exc)
            await self.store.close()
            self.store = None


def _print_first_run(server: Server) -> None:
    if server.first_run is None:
        return
    address, password = server.first_run
    config = server.config
    print(
        "\nFirst start: created domain example.test and user\n"
        f"    {address}\n    password: {password}\n\n"
        "Point a mail client at it (the certificate is self-signed: accept it once):\n"
        f"    SMTP submission  {', '.join(config.listen.submission) or '(off)'} STARTTLS,"
        f" {', '.join(config.listen.submissions) or '(off)'} TLS\n"
        f"    IMAP             {', '.join(config.listen.imap) or '(off)'} STARTTLS,"
        f" {', '.join(config.listen.imaps) or '(off)'} TLS\n"
        f"    POP3             {', '.join(config.listen.pop3) or '(off)'} STLS,"
        f" {', '.join(config.listen.pop3s) or '(off)'} TLS\n"
        f"    MX (incoming)    {', '.join(config.listen.smtp) or '(off)'}\n"
        "Add users with: mailpost user add you@example.test --password-stdin\n",
        flush=True,
    )


async def _serve_until_signalled(config: Config) -> None:
    server = Server(config)
    await server.start()
    _print_first_run(server)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    # Everything built so far lives as long as the process: keep full collections, which
    # stall every session at once, from walking it again and again, and make them rarer
    # (see ``runtime``).
    log.debug("objects frozen after start-up: %d; collector thresholds %s",
              freeze_startup_objects(), space_out_full_collections())
    log.info("mailpost ready (%s)", config.hostname)
    try:
        await stop.wait()
    finally:
        log.info("shutting down")
        await server.stop()


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def raise_open_files_limit() -> int:
    """Lift the soft open-files limit to the hard one: every IDLE client holds a socket, and
    the default soft limit (often 1024) would refuse connections long before memory does."""
    try:
        import resource
    except ImportError:  # pragma: no cover - not on POSIX
        return 0
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = max(soft, 1_048_576)
    if soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):
            return soft
    return hard


def serve(config: Config) -> int:
    """Run the server until SIGINT/SIGTERM; the body of ``mailpost serve``."""
    configure_logging(config.log.level)
    log.info("open files limit: %d", raise_open_files_limit())
    # Before the first login: argon2's working memory must never settle in malloc's heap,
    # where every worker thread would keep its own copy resident (see ``runtime``).
    threshold = return_large_blocks_to_system()
    if threshold is not None:
        log.info("malloc: blocks of %d bytes or more are returned to the system", threshold)
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency, but optional at run time
        asyncio.run(_serve_until_signalled(config))
    else:
        uvloop.run(_serve_until_signalled(config))
    return 0
