"""Arguments of the extension commands ID (RFC 2971), QUOTA (RFC 9208) and NOTIFY (RFC 5465).

Theory of operation
-------------------
Each function takes a cursor positioned just after the command name and returns the typed
command, or raises :class:`~mailpost.imap.errors.ParseError`. The limits of RFC 2971 §3.3
(30 pairs, 30-octet fields, 1024-octet values) are enforced here because they also bound
the memory an unauthenticated client can make us hold (ID is valid in every state).

NOTIFY event names are returned in their canonical spelling (``MessageNew``) whatever the
client's case; unknown event names are kept as written so the session can answer
``NO [BADEVENT (...)]`` (RFC 5465 §5.1, §8).
"""

from __future__ import annotations

from mailpost.imap.commands import (
    GetQuota,
    GetQuotaRoot,
    Id,
    Notify,
    NotifyEvent,
    NotifyGroup,
    SetQuota,
)
from mailpost.imap.cursor import Cursor, utf8
from mailpost.imap.errors import ParseError
from mailpost.imap.fetchatt import FetchAttribute, parse_fetch_att
from mailpost.imap.mailboxargs import mailbox

MAX_ID_PAIRS = 30
MAX_ID_FIELD = 30
MAX_ID_VALUE = 1024

NOTIFY_EVENTS = {
    name.upper(): name
    for name in (
        "MessageNew", "MessageExpunge", "FlagChange", "AnnotationChange", "MailboxName",
        "SubscriptionChange", "MailboxMetadataChange", "ServerMetadataChange",
    )
}
_MAILBOX_FILTERS = frozenset({"SUBTREE", "MAILBOXES"})
_PLAIN_FILTERS = frozenset({"SELECTED", "SELECTED-DELAYED", "INBOXES", "PERSONAL", "SUBSCRIBED"})


# --- ID ----------------------------------------------------------------------------------


def id_command(cur: Cursor, tag: str) -> Id:
    cur.sp()
    if cur.accept_keyword(b"NIL"):
        cur.expect_end()
        return Id(tag, None)
    cur.expect(b"(")
    pairs: list[tuple[str, str | None]] = []
    while not cur.accept(b")"):
        if pairs:
            cur.sp()
        pairs.append(_id_pair(cur))
        if len(pairs) > MAX_ID_PAIRS:
            raise ParseError("Too many ID parameters")
    cur.expect_end()
    return Id(tag, tuple(pairs))


def _id_pair(cur: Cursor) -> tuple[str, str | None]:
    field = cur.string()
    cur.sp()
    value = cur.nstring()
    if len(field) > MAX_ID_FIELD or (value is not None and len(value) > MAX_ID_VALUE):
        raise ParseError("ID field or value too long")
    return utf8(field, "ID field"), None if value is None else utf8(value, "ID value")


# --- QUOTA (RFC 9208 §4) -------------------------------------------------------------------


def getquota(cur: Cursor, tag: str) -> GetQuota:
    cur.sp()
    root = utf8(cur.astring(), "quota root")
    cur.expect_end()
    return GetQuota(tag, root)


def getquotaroot(cur: Cursor, tag: str, *, utf8_mode: bool) -> GetQuotaRoot:
    cur.sp()
    name = mailbox(cur, utf8_mode=utf8_mode)
    cur.expect_end()
    return GetQuotaRoot(tag, name)


def setquota(cur: Cursor, tag: str) -> SetQuota:
    cur.sp()
    root = utf8(cur.astring(), "quota root")
    cur.sp()
    cur.expect(b"(")
    limits: list[tuple[str, int]] = []
    while not cur.accept(b")"):
        if limits:
            cur.sp()
        resource = cur.keyword()
        cur.sp()
        limits.append((resource, cur.number64()))
    cur.expect_end()
    return SetQuota(tag, root, tuple(limits))


# --- NOTIFY (RFC 5465 §8) ------------------------------------------------------------------


def notify(cur: Cursor, tag: str, *, utf8_mode: bool) -> Notify:
    cur.sp()
    verb = cur.keyword()
    if verb == "NONE":
        cur.expect_end()
        return Notify(tag, None)
    if verb != "SET":
        raise ParseError("Expected NOTIFY SET or NOTIFY NONE")
    cur.sp()
    with_status = cur.accept_keyword(b"STATUS")
    if with_status:
        cur.sp()
    groups = [_event_group(cur, utf8_mode)]
    while cur.accept(b" "):
        groups.append(_event_group(cur, utf8_mode))
    cur.expect_end()
    _check_selected_once(groups)
    return Notify(tag, tuple(groups), with_status)


def _check_selected_once(groups: list[NotifyGroup]) -> None:
    selected = [g for g in groups if g.filter in ("SELECTED", "SELECTED-DELAYED")]
    if len(selected) > 1:
        raise ParseError("Only one of SELECTED and SELECTED-DELAYED may be given")


def _event_group(cur: Cursor, utf8_mode: bool) -> NotifyGroup:
    cur.expect(b"(")
    kind = cur.keyword()
    mailboxes: tuple[str, ...] = ()
    if kind in _MAILBOX_FILTERS:
        cur.sp()
        mailboxes = _one_or_more_mailbox(cur, utf8_mode)
    elif kind not in _PLAIN_FILTERS:
        raise ParseError(f"Unknown NOTIFY mailbox filter {kind[:40]}")
    cur.sp()
    events = None if cur.accept_keyword(b"NONE") else _events(cur)
    cur.expect(b")")
    return NotifyGroup(kind, mailboxes, events)


def _one_or_more_mailbox(cur: Cursor, utf8_mode: bool) -> tuple[str, ...]:
    if not cur.accept(b"("):
        return (mailbox(cur, utf8_mode=utf8_mode),)
    names = [mailbox(cur, utf8_mode=utf8_mode)]
    while not cur.accept(b")"):
        cur.sp()
        names.append(mailbox(cur, utf8_mode=utf8_mode))
    return tuple(names)


def _events(cur: Cursor) -> tuple[NotifyEvent, ...]:
    cur.expect(b"(")
    events = [_event(cur)]
    while not cur.accept(b")"):
        cur.sp()
        events.append(_event(cur))
    return tuple(events)


def _event(cur: Cursor) -> NotifyEvent:
    word = cur.atom()
    name = NOTIFY_EVENTS.get(word.upper(), word)
    attributes: tuple[FetchAttribute, ...] = ()
    if name == "MessageNew" and cur.accept(b" ("):
        items = [parse_fetch_att(cur)]
        while not cur.accept(b")"):
            cur.sp()
            items.append(parse_fetch_att(cur))
        attributes = tuple(items)
    return NotifyEvent(name, attributes)
