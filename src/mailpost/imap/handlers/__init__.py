"""IMAP command handlers, one module per command family, joined in one dispatch table.

Each module exports ``HANDLERS`` (command class → ``async def handler(session, command)``
returning the response that completes the command) and ``CAPABILITIES`` (what it adds to the
post-login CAPABILITY list: only what works is advertised). :func:`allowed_states` says in
which session states each command is valid (RFC 9051 §6: "any state", "not authenticated",
"authenticated" (which includes selected) and "selected").
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mailpost.imap import commands as cmd
from mailpost.imap import events as ev
from mailpost.imap.handlers import (
    append,
    connection,
    fetch,
    mailboxes,
    notify,
    search,
    selection,
)

if TYPE_CHECKING:
    from mailpost.imap.session import Handler, IMAPSession, SessionState

_MODULES = (connection, selection, mailboxes, fetch, search, append, notify)

HANDLERS: dict[type[cmd.Command], Handler] = {}
POST_LOGIN_CAPABILITIES: list[str] = []
for _module in _MODULES:
    HANDLERS.update(_module.HANDLERS)
    POST_LOGIN_CAPABILITIES.extend(_module.CAPABILITIES)

_ANY = (cmd.Capability, cmd.Noop, cmd.Logout, cmd.Id)
_NOT_AUTHENTICATED = (cmd.StartTLS, cmd.Authenticate, cmd.Login)
_SELECTED = (cmd.Check, cmd.Close, cmd.Unselect, cmd.Expunge, cmd.UidExpunge, cmd.Search,
             cmd.Fetch, cmd.Store, cmd.Copy, cmd.Move, cmd.Sort, cmd.Thread)


def allowed_states(command: type[cmd.Command]) -> frozenset[SessionState]:
    from mailpost.imap.session import SessionState as S
    if issubclass(command, _ANY):
        return frozenset({S.NOT_AUTHENTICATED, S.AUTHENTICATED, S.SELECTED})
    if issubclass(command, _NOT_AUTHENTICATED):
        return frozenset({S.NOT_AUTHENTICATED})
    if issubclass(command, _SELECTED):
        return frozenset({S.SELECTED})
    return frozenset({S.AUTHENTICATED, S.SELECTED})


def capabilities(session: IMAPSession) -> list[str]:
    """The CAPABILITY list for this session's state (RFC 9051 §6.1.1)."""
    from mailpost.imap.session import SessionState
    base = ["IMAP4rev1", "IMAP4rev2", "LITERAL+", "ENABLE", "ID", "IDLE", "SASL-IR"]
    if session.state is SessionState.NOT_AUTHENTICATED:
        return base + connection.preauth_capabilities(session)
    # UTF8=ACCEPT spans families: names (mailboxes), UTF8 APPEND (append), no SEARCH
    # CHARSET (search); RFC 6855.
    extra = ["UTF8=ACCEPT", append.appendlimit_capability(session.config)]
    if not session.compressed:
        extra.append("COMPRESS=DEFLATE")
    return base + POST_LOGIN_CAPABILITIES + extra


async def literal_decision(session: IMAPSession,
                           event: ev.LiteralRequest | ev.AppendMessage) -> None:
    if isinstance(event, ev.AppendMessage):
        await append.on_message(session, event)
        return
    # Other literals (LOGIN arguments, search strings): the machine already enforced the
    # size limits of the session's state, so the client may send it.
    session.write(session.proto.accept_literal())


async def abort_append(session: IMAPSession) -> None:
    await append.on_abort(session)


async def stray_event(session: IMAPSession, event: object) -> None:
    """Events that continue a command begun earlier (AUTHENTICATE lines, APPEND data)."""
    if isinstance(event, (ev.AuthenticateResponse, ev.AuthenticateCancel)):
        session.respond(await connection.authenticate_step(session, event))
    elif isinstance(event, (ev.AppendData, ev.AppendDone)):
        await append.on_event(session, event)
    else:  # pragma: no cover - Done is consumed inside IDLE
        raise TypeError(f"unexpected IMAP event {event!r}")
