"""Connection-level commands: CAPABILITY, NOOP, LOGOUT, ID, ENABLE, STARTTLS, LOGIN,
AUTHENTICATE, COMPRESS and IDLE (RFC 9051 §6.1-6.3.13, RFC 2971, RFC 5161, RFC 4978, RFC 2177).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from mailpost import __version__
from mailpost.auth.sasl import Challenge, Credentials, Failure, mechanism
from mailpost.imap import commands as cmd
from mailpost.imap import events as ev
from mailpost.imap import responses as rsp
from mailpost.imap.responses import Bye, Continuation, Enabled, Response, Tagged

if TYPE_CHECKING:
    from mailpost.bus import Subscription
    from mailpost.imap.session import Handler, IMAPSession

CAPABILITIES: tuple[str, ...] = ()
SASL_MECHANISMS = ("PLAIN", "LOGIN")
# ENABLE-able extensions (RFC 5161) we implement, and what each drags in (RFC 7162 §3.2.3).
ENABLEABLE = {"IMAP4REV2": (), "UTF8=ACCEPT": (), "CONDSTORE": (), "QRESYNC": ("CONDSTORE",)}


def credentials_allowed(session: IMAPSession) -> bool:
    return session.connection.tls_active or session.config.imap.allow_insecure_auth


def preauth_capabilities(session: IMAPSession) -> list[str]:
    caps = []
    if session.services.tls_context is not None and not session.connection.tls_active:
        caps.append("STARTTLS")
    if credentials_allowed(session):
        caps.extend(f"AUTH={name}" for name in SASL_MECHANISMS)
    else:
        caps.append("LOGINDISABLED")  # RFC 9051 §6.2.3, §11.7
    return caps


async def capability(session: IMAPSession, command: cmd.Command) -> Response:
    from mailpost.imap.handlers import capabilities
    session.write(rsp.capability(capabilities(session)))
    return Tagged(command.tag, "OK", "CAPABILITY completed")


async def noop(session: IMAPSession, command: cmd.Command) -> Response:
    # The dispatcher's catch-up after every command is what makes NOOP useful (§6.1.2).
    return Tagged(command.tag, "OK", "NOOP completed")


async def logout(session: IMAPSession, command: cmd.Command) -> Response:
    session.respond(Bye("mailpost logging out"))  # RFC 9051 §6.1.3: BYE, then the tagged OK
    return Tagged(command.tag, "OK", "LOGOUT completed")


async def identify(session: IMAPSession, command: cmd.Command) -> Response:
    session.write(rsp.id_response((("name", "mailpost"), ("version", __version__))))
    return Tagged(command.tag, "OK", "ID completed")


async def enable(session: IMAPSession, command: cmd.Command) -> Response:
    assert isinstance(command, cmd.Enable)
    from mailpost.imap.handlers import capabilities
    offered = {name.upper() for name in capabilities(session)}
    newly: list[str] = []
    for name in command.capabilities:
        upper = name.upper()
        if upper not in ENABLEABLE or upper not in offered:
            continue  # RFC 5161 §3.1: unknown or unsupported names are ignored
        for implied in (*ENABLEABLE[upper], upper):
            if implied not in session.enabled:
                session.enabled.add(implied)
                newly.append(implied)
    session.options.condstore = "CONDSTORE" in session.enabled
    session.options.qresync = "QRESYNC" in session.enabled
    session.respond(Enabled(tuple(newly)))
    if "CONDSTORE" in newly and session.selected is not None:
        # RFC 7162 §3.1: the first CONDSTORE enabling command with a mailbox selected.
        session.write(rsp.untagged(b"OK [HIGHESTMODSEQ %d] Highest" % session.selected.modseq))
    return Tagged(command.tag, "OK", "ENABLE completed")


async def starttls(session: IMAPSession, command: cmd.Command) -> Response | None:
    context = session.services.tls_context
    if context is None or session.connection.tls_active:
        return Tagged(command.tag, "BAD", "TLS is already active" if context else
                      "TLS is not available")
    session.respond(Tagged(command.tag, "OK", "Begin TLS negotiation now"))
    await session.flush()
    await session.connection.start_tls(context, session.config.limits.tls_handshake_timeout)
    session.proto.tls_started()  # buffered plaintext was set aside, never parsed
    return None


async def login(session: IMAPSession, command: cmd.Command) -> Response:
    assert isinstance(command, cmd.Login)
    if not credentials_allowed(session):
        return Tagged(command.tag, "NO", "Use STARTTLS first", "PRIVACYREQUIRED")
    return await finish_login(session, command.tag,
                              Credentials("", command.userid, command.password))


async def authenticate(session: IMAPSession, command: cmd.Command) -> Response:
    assert isinstance(command, cmd.Authenticate)
    if not credentials_allowed(session):
        return Tagged(command.tag, "NO", "Use STARTTLS first", "PRIVACYREQUIRED")
    sasl = mechanism(command.mechanism)
    if sasl is None:
        return Tagged(command.tag, "NO", "Unsupported authentication mechanism")
    session.sasl = (command.tag, sasl)
    return await sasl_outcome(session, command.tag, sasl.start(command.initial_response))


async def authenticate_step(session: IMAPSession,
                            event: ev.AuthenticateResponse | ev.AuthenticateCancel) -> Response:
    if isinstance(event, ev.AuthenticateCancel) or session.sasl is None:
        session.sasl = None
        return Tagged(event.tag, "BAD", "Authentication cancelled")
    _, sasl = session.sasl
    return await sasl_outcome(session, event.tag, sasl.step(event.data))


async def sasl_outcome(session: IMAPSession, tag: str,
                       step: Challenge | Credentials | Failure) -> Response:
    if isinstance(step, Challenge):
        return Continuation(data=step.data)
    session.sasl = None
    if isinstance(step, Failure):
        return Tagged(tag, "BAD", f"Malformed authentication exchange: {step.reason}")
    return await finish_login(session, tag, step)


async def finish_login(session: IMAPSession, tag: str, credentials: Credentials) -> Response:
    ip = session.connection.remote_ip
    if session.services.throttle.too_many(ip):
        return Bye("Too many failed logins, try again later", "UNAVAILABLE")
    result = await session.services.authenticator.authenticate(credentials, ip)
    if result.ok and result.account is not None:
        if not session.logged_in(result.account):
            return Tagged(tag, "NO", "Too many sessions for this account", "LIMIT")
        from mailpost.imap.handlers import capabilities
        return Tagged(tag, "OK", "Logged in", "CAPABILITY " + " ".join(capabilities(session)))
    if session.services.throttle.too_many(ip):
        return Bye("Too many failed logins, try again later", "UNAVAILABLE")
    if result.reason == "authorization-failed":
        return Tagged(tag, "NO", "Not authorized", "AUTHORIZATIONFAILED")
    if result.reason == "throttled":
        return Tagged(tag, "NO", "Try again later", "UNAVAILABLE")
    return Tagged(tag, "NO", "Invalid credentials", "AUTHENTICATIONFAILED")


async def compress(session: IMAPSession, command: cmd.Command) -> Response | None:
    assert isinstance(command, cmd.Compress)
    if session.compressed:
        return Tagged(command.tag, "NO", "Compression is already active", "COMPRESSIONACTIVE")
    if command.mechanism.upper() != "DEFLATE":
        return Tagged(command.tag, "BAD", "Unknown compression mechanism")
    session.respond(Tagged(command.tag, "OK", "DEFLATE active"))
    session.start_compression(session.proto.take_unconsumed())
    return None


async def idle(session: IMAPSession, command: cmd.Command) -> Response | None:
    """RFC 2177, RFC 9051 §6.3.13: push changes until DONE."""
    session.respond(Continuation("idling"))
    if not await session.catch_up(allow_expunge=True):
        return None
    reader: asyncio.Task[bytes] | None = None
    wakeup = IdleWakeup()
    try:
        while True:
            event = session.proto.next_event()
            if isinstance(event, ev.Done):
                return Tagged(event.tag, "OK", "IDLE terminated")
            if isinstance(event, (ev.BadCommand, ev.Fatal)):
                return event.response
            if isinstance(event, ev.ConnectionClosed):
                session.closing = True
                return Tagged(command.tag, "OK", "IDLE ended by disconnect")
            await session.flush()
            if reader is None:
                reader = asyncio.ensure_future(session.read_input(session.config.imap.idle_timeout))
                reader.add_done_callback(wakeup.ring)
            if await wakeup.input_or_change(reader, session.subscription):
                session.proto.receive_data(reader.result())
                reader = None
            elif not await session.catch_up(allow_expunge=True):
                return None
    finally:
        if reader is not None:
            reader.cancel()


class IdleWakeup:
    """The one point an IDLE session waits at: a single future per wait, resolved by whichever
    comes first, the client's input (the read task's done callback) or the bus (the
    subscription resolves the futures it hands out on its next change).

    One delivery wakes every session of the mailbox at once, so a wake-up must cost little:
    no task, no ``asyncio.wait`` bookkeeping, no future to cancel afterwards; the bus resolves
    the future directly and the session runs in the next loop iteration. When input comes
    first, the read's callback resolves that same future, which the subscription then drops
    as done (``Subscription.wait_ready``), so waits that input ends never pile up there.
    """

    __slots__ = ("_reader", "_waiting")

    def __init__(self) -> None:
        self._reader: asyncio.Future[bytes] | None = None
        self._waiting: asyncio.Future[None] | None = None

    def ring(self, finished: asyncio.Future[bytes]) -> None:
        """The read task's done callback: wake the session if it waits for that read (an
        earlier read whose callback runs late must not wake a later wait)."""
        waiting = self._waiting
        if waiting is not None and finished is self._reader and not waiting.done():
            waiting.set_result(None)

    async def input_or_change(self, reader: asyncio.Future[bytes],
                              subscription: Subscription | None) -> bool:
        """Wait; True when input arrived (it wins a tie), False when the bus rang first."""
        if reader.done():
            return True
        if subscription is None:
            waiting: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        else:
            waiting = subscription.wait_ready()  # already resolved if changes are queued
        self._reader, self._waiting = reader, waiting
        try:
            await waiting
        finally:
            self._reader = self._waiting = None
        return reader.done()


HANDLERS: dict[type[cmd.Command], Handler] = {
    cmd.Capability: capability,
    cmd.Noop: noop,
    cmd.Logout: logout,
    cmd.Id: identify,
    cmd.Enable: enable,
    cmd.StartTLS: starttls,
    cmd.Login: login,
    cmd.Authenticate: authenticate,
    cmd.Compress: compress,
    cmd.Idle: idle,
}
