"""The command grammar: a complete command's fragments and literals -> one typed command.

Theory of operation
-------------------
:func:`parse_command` reads ``tag SP command-name`` and dispatches on the (upper-cased)
name through :data:`_COMMANDS`, or :data:`_UID_COMMANDS` after ``UID`` (RFC 9051 §6.4.9,
plus UID SORT/THREAD from RFC 5256 and UID MOVE from RFC 6851). Each handler consumes the
arguments with the :class:`~mailpost.imap.cursor.Cursor` primitives, finishes with
``expect_end()`` (RFC 9051 §2.2.1: "It is a syntax error to send a command with missing or
extraneous spaces or arguments") and returns a dataclass from :mod:`mailpost.imap.commands`.
Any violation raises :class:`~mailpost.imap.errors.ParseError`.

The handlers depend on a :class:`ParseContext`, the only session facts that change what the
grammar accepts: whether mailbox names are UTF-8 (see :mod:`mailpost.imap.mailboxargs`),
whether ``UTF8=ACCEPT`` forbids SEARCH CHARSET (RFC 6855 §3), and the nesting limit.

APPEND is not handled here: the protocol machine parses it one message at a time while the
message literals stream past (:mod:`mailpost.imap.append`).

SEARCH charsets: only ``US-ASCII`` and ``UTF-8`` are supported; any other is answered
``NO [BADCHARSET (US-ASCII UTF-8)]`` straight away, before its strings are even looked at
(RFC 9051 §6.4.4).
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from mailpost.imap import commands as cmd
from mailpost.imap import extargs, mailboxargs
from mailpost.imap.cursor import ATOM, TAG, Cursor, Literal, utf8
from mailpost.imap.errors import ParseError
from mailpost.imap.fetchatt import parse_fetch_attributes
from mailpost.imap.search import parse_search_program
from mailpost.store.types import FlagMode

SUPPORTED_CHARSETS = ("US-ASCII", "UTF-8")
BADCHARSET = "BADCHARSET (US-ASCII UTF-8)"
SYSTEM_FLAGS = {
    name.upper(): name
    for name in ("\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft", "\\Recent")
}
SEARCH_RETURN_OPTIONS = frozenset({"MIN", "MAX", "ALL", "COUNT", "SAVE"})
SORT_KEYS = frozenset({"ARRIVAL", "CC", "DATE", "FROM", "SIZE", "SUBJECT", "TO"})

_FLAG = re.compile(rb"\\?" + ATOM.pattern)
_STORE_ITEM = re.compile(rb"([+-]?)FLAGS(\.SILENT)?", re.IGNORECASE)
_BASE64 = re.compile(rb"(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?")
_SASL_TOKEN = re.compile(rb"[A-Za-z0-9+/=]+")


@dataclass(frozen=True, slots=True)
class ParseContext:
    """Session facts the grammar depends on (see the module docstring)."""

    utf8_mode: bool = False
    utf8_accept: bool = False
    max_depth: int = 100


def parse_command(
    fragments: Sequence[bytes], literals: Sequence[Literal], ctx: ParseContext
) -> cmd.Command:
    """Parse one complete command; raise ``ParseError`` for any syntax or limit violation."""
    cur = Cursor(fragments, literals, max_depth=ctx.max_depth)
    tag = read_tag(cur)
    cur.sp()
    name = cur.keyword()
    if name == "UID":
        cur.sp()
        uid_handler = _UID_COMMANDS.get(cur.keyword())
        if uid_handler is None:
            raise ParseError("Unknown UID command")
        return uid_handler(cur, tag, ctx)
    handler = _COMMANDS.get(name)
    if handler is None:
        raise ParseError(f"Unknown command {name[:40]}")
    return handler(cur, tag, ctx)


def read_tag(cur: Cursor) -> str:
    found = cur.match(TAG)
    if found is None:
        raise ParseError("Missing or invalid tag")
    return found.group().decode("ascii")


def peek_command(line: bytes) -> tuple[str | None, str]:
    """The tag and (upper-case) command name at the start of a first fragment, best effort:
    ``(None, "")`` if there is no valid tag. Used for BAD responses and literal decisions."""
    match = re.match(rb"(" + TAG.pattern + rb") ([A-Za-z]+)(?: ([A-Za-z]+))?", line)
    if match is None:
        tag = TAG.match(line)
        return (tag.group().decode("ascii") if tag else None), ""
    name = match.group(2).decode("ascii").upper()
    if name == "UID" and match.group(3):
        name += " " + match.group(3).decode("ascii").upper()
    return match.group(1).decode("ascii"), name


def decode_sasl_base64(data: bytes) -> bytes | None:
    """Strict base64 (RFC 9051 §6.2.2: no characters outside the alphabet, "=" only at the
    end); None if invalid. The empty string is a valid empty response."""
    if _BASE64.fullmatch(data) is None:
        return None
    try:
        return base64.b64decode(data, validate=True)
    except binascii.Error:
        return None


# --- simple commands -------------------------------------------------------------------------


def _no_arguments(cls: type[cmd.Command]) -> _Handler:
    def handler(cur: Cursor, tag: str, ctx: ParseContext) -> cmd.Command:
        cur.expect_end()
        return cls(tag)

    return handler


def _login(cur: Cursor, tag: str, ctx: ParseContext) -> cmd.Command:
    cur.sp()
    userid = utf8(cur.astring(), "user name")
    cur.sp()
    password = utf8(cur.astring(), "password")
    cur.expect_end()
    return cmd.Login(tag, userid, password)


def _authenticate(cur: Cursor, tag: str, ctx: ParseContext) -> cmd.Command:
    cur.sp()
    mechanism = cur.keyword()
    initial: bytes | None = None
    if cur.accept(b" "):
        token = cur.match(_SASL_TOKEN)
        if token is None:
            raise ParseError("Invalid initial response")
        initial = b"" if token.group() == b"=" else decode_sasl_base64(token.group())
        if initial is None:
            raise ParseError("Invalid base64 in initial response")
    cur.expect_end()
    return cmd.Authenticate(tag, mechanism, initial)


def _enable(cur: Cursor, tag: str, ctx: ParseContext) -> cmd.Command:
    names = []
    while cur.accept(b" "):
        names.append(cur.keyword())
    if not names:
        raise ParseError("ENABLE needs at least one capability")
    cur.expect_end()
    return cmd.Enable(tag, tuple(dict.fromkeys(names)))


def _compress(cur: Cursor, tag: str, ctx: ParseContext) -> cmd.Command:
    cur.sp()
    mechanism = cur.keyword()
    cur.expect_end()
    return cmd.Compress(tag, mechanism)


# --- mailbox commands ------------------------------------------------------------------------


def _one_mailbox(cls: type[cmd.Delete | cmd.Subscribe | cmd.Unsubscribe]) -> _Handler:
    def handler(cur: Cursor, tag: str, ctx: ParseContext) -> cmd.Command:
        cur.sp()
        name = mailboxargs.mailbox(cur, utf8_mode=ctx.utf8_mode)
        cur.expect_end()
        return cls(tag, name)

    return handler


def _rename(cur: Cursor, tag: str, ctx: ParseContext) -> cmd.Command:
    cur.sp()
    old = mailboxargs.mailbox(cur, utf8_mode=ctx.utf8_mode)
    cur.sp()
    new = mailboxargs.mailbox(cur, utf8_mode=ctx.utf8_mode)
    cur.expect_end()
    return cmd.Rename(tag, old, new)


def _lsub(cur: Cursor, tag: str, ctx: ParseContext) -> cmd.Command:
    cur.sp()
    reference = mailboxargs.mailbox(cur, utf8_mode=ctx.utf8_mode)
    cur.sp()
    pattern = mailboxargs.decode_mailbox_name(cur.list_mailbox(), utf8_mode=ctx.utf8_mode)
    cur.expect_end()
    return cmd.Lsub(tag, reference, pattern)


# --- message commands ------------------------------------------------------------------------


def _search(uid: bool) -> _Handler:
    def handler(cur: Cursor, tag: str, ctx: ParseContext) -> cmd.Command:
        cur.sp()
        returns = _search_return(cur)
        charset = None
        if cur.accept_keyword(b"CHARSET"):
            if ctx.utf8_accept:
                raise ParseError("CHARSET is not allowed after ENABLE UTF8=ACCEPT")
            cur.sp()
            charset = _charset(cur)
            cur.sp()
        key = parse_search_program(cur)
        return cmd.Search(tag, key, charset, returns, uid)

    return handler


def _search_return(cur: Cursor) -> tuple[str, ...] | None:
    """``[RETURN SP "(" [opt *(SP opt)] ")" SP]`` (RFC 4731 §3.1, RFC 5182 §2.1)."""
    if not cur.accept_keyword(b"RETURN"):
        return None
    cur.sp()
    cur.expect(b"(")
    options: list[str] = []
    while not cur.accept(b")"):
        if options:
            cur.sp()
        option = cur.keyword()
        if option not in SEARCH_RETURN_OPTIONS:
            raise ParseError(f"Unknown SEARCH return option {option[:40]}")
        options.append(option)
    cur.sp()
    return tuple(dict.fromkeys(options)) or ("ALL",)


def _charset(cur: Cursor) -> str:
    raw = cur.quoted() if cur.peek() == ord('"') else cur.atom().encode("ascii")
    charset = raw.decode("utf-8").upper()
    if charset not in SUPPORTED_CHARSETS:
        raise ParseError(f"Unsupported charset {charset[:40]}", code=BADCHARSET, status="NO")
    return charset


def _fetch(uid: bool) -> _Handler:
    def handler(cur: Cursor, tag: str, ctx: ParseContext) -> cmd.Command:
        cur.sp()
        seqset = cur.sequence_set()
        cur.sp()
        attributes = parse_fetch_attributes(cur)
        changed_since: int | None = None
        vanished = False
        if cur.accept(b" ("):
            changed_since, vanished = _fetch_modifiers(cur)
        cur.expect_end()
        if vanished and not uid:
            raise ParseError("VANISHED is only allowed in UID FETCH")
        if vanished and changed_since is None:
            raise ParseError("VANISHED needs CHANGEDSINCE")
        return cmd.Fetch(tag, seqset, attributes, uid, changed_since, vanished)

    return handler


def _fetch_modifiers(cur: Cursor) -> tuple[int | None, bool]:
    """``fetch-modifier *(SP fetch-modifier) ")"`` after the opening parenthesis."""
    changed_since: int | None = None
    vanished = False
    while True:
        word = cur.keyword()
        if word == "CHANGEDSINCE" and changed_since is None:
            cur.sp()
            changed_since = cur.number64(nonzero=True)
        elif word == "VANISHED" and not vanished:
            vanished = True
        else:
            raise ParseError(f"Unknown or repeated FETCH modifier {word[:40]}")
        if cur.accept(b")"):
            return changed_since, vanished
        cur.sp()


def _store(uid: bool) -> _Handler:
    def handler(cur: Cursor, tag: str, ctx: ParseContext) -> cmd.Command:
        cur.sp()
        seqset = cur.sequence_set()
        cur.sp()
        unchanged_since = None
        if cur.accept(b"("):
            if cur.keyword() != "UNCHANGEDSINCE":
                raise ParseError("Unknown STORE modifier")
            cur.sp()
            unchanged_since = cur.number64()
            cur.expect(b")")
            cur.sp()
        item = cur.match(_STORE_ITEM)
        if item is None:
            raise ParseError("Expected FLAGS, +FLAGS or -FLAGS")
        mode = {b"+": FlagMode.ADD, b"-": FlagMode.REMOVE, b"": FlagMode.REPLACE}[item.group(1)]
        cur.sp()
        flags = _store_flags(cur)
        cur.expect_end()
        return cmd.Store(tag, seqset, mode, item.group(2) is not None, flags, uid, unchanged_since)

    return handler


def _store_flags(cur: Cursor) -> tuple[str, ...]:
    """``flag-list / (flag *(SP flag))`` (RFC 9051 §9 ``store-att-flags``)."""
    flags: list[str] = []
    if cur.accept(b"("):
        while not cur.accept(b")"):
            if flags:
                cur.sp()
            flags.append(read_flag(cur))
        return tuple(dict.fromkeys(flags))
    flags.append(read_flag(cur))
    while cur.accept(b" "):
        flags.append(read_flag(cur))
    return tuple(dict.fromkeys(flags))


def read_flag(cur: Cursor) -> str:
    """``flag``: a system flag (canonical spelling), ``\\`` extension, or keyword atom."""
    found = cur.match(_FLAG)
    if found is None:
        raise ParseError("Invalid flag")
    text = found.group().decode("ascii")
    return SYSTEM_FLAGS.get(text.upper(), text)


def _copy_or_move(cls: type[cmd.Copy | cmd.Move], uid: bool) -> _Handler:
    def handler(cur: Cursor, tag: str, ctx: ParseContext) -> cmd.Command:
        cur.sp()
        seqset = cur.sequence_set()
        cur.sp()
        name = mailboxargs.mailbox(cur, utf8_mode=ctx.utf8_mode)
        cur.expect_end()
        return cls(tag, seqset, name, uid)

    return handler


def _uid_expunge(cur: Cursor, tag: str, ctx: ParseContext) -> cmd.Command:
    cur.sp()
    seqset = cur.sequence_set()
    cur.expect_end()
    return cmd.UidExpunge(tag, seqset)


def _sort(uid: bool) -> _Handler:
    def handler(cur: Cursor, tag: str, ctx: ParseContext) -> cmd.Command:
        cur.sp()
        returns = _search_return(cur)
        cur.expect(b"(")
        criteria = [_sort_criterion(cur)]
        while not cur.accept(b")"):
            cur.sp()
            criteria.append(_sort_criterion(cur))
        cur.sp()
        charset = _charset(cur)
        cur.sp()
        key = parse_search_program(cur)
        return cmd.Sort(tag, tuple(criteria), charset, key, uid, returns)

    return handler


def _sort_criterion(cur: Cursor) -> cmd.SortCriterion:
    reverse = cur.accept_keyword(b"REVERSE")
    if reverse:
        cur.sp()
    key = cur.keyword()
    if key not in SORT_KEYS:
        raise ParseError(f"Unknown sort key {key[:40]}")
    return cmd.SortCriterion(key, reverse)


def _thread(uid: bool) -> _Handler:
    def handler(cur: Cursor, tag: str, ctx: ParseContext) -> cmd.Command:
        cur.sp()
        algorithm = cur.keyword()
        cur.sp()
        charset = _charset(cur)
        cur.sp()
        return cmd.Thread(tag, algorithm, charset, parse_search_program(cur), uid)

    return handler


def _select(cls: type[cmd.SelectBase]) -> _Handler:
    def handler(cur: Cursor, tag: str, ctx: ParseContext) -> cmd.Command:
        return mailboxargs.select(cur, cls, tag, utf8_mode=ctx.utf8_mode)

    return handler


def _append(cur: Cursor, tag: str, ctx: ParseContext) -> cmd.Command:
    raise ParseError("APPEND is handled by the protocol machine")  # never reached


_Handler = Callable[[Cursor, str, ParseContext], cmd.Command]

_COMMANDS: dict[str, _Handler] = {
    "CAPABILITY": _no_arguments(cmd.Capability),
    "NOOP": _no_arguments(cmd.Noop),
    "LOGOUT": _no_arguments(cmd.Logout),
    "STARTTLS": _no_arguments(cmd.StartTLS),
    "NAMESPACE": _no_arguments(cmd.Namespace),
    "CHECK": _no_arguments(cmd.Check),
    "CLOSE": _no_arguments(cmd.Close),
    "UNSELECT": _no_arguments(cmd.Unselect),
    "EXPUNGE": _no_arguments(cmd.Expunge),
    "IDLE": _no_arguments(cmd.Idle),
    "LOGIN": _login,
    "AUTHENTICATE": _authenticate,
    "ENABLE": _enable,
    "COMPRESS": _compress,
    "ID": lambda cur, tag, ctx: extargs.id_command(cur, tag),
    "SELECT": _select(cmd.Select),
    "EXAMINE": _select(cmd.Examine),
    "CREATE": lambda cur, tag, ctx: mailboxargs.create(cur, tag, utf8_mode=ctx.utf8_mode),
    "DELETE": _one_mailbox(cmd.Delete),
    "RENAME": _rename,
    "SUBSCRIBE": _one_mailbox(cmd.Subscribe),
    "UNSUBSCRIBE": _one_mailbox(cmd.Unsubscribe),
    "LIST": lambda cur, tag, ctx: mailboxargs.list_command(cur, tag, utf8_mode=ctx.utf8_mode),
    "LSUB": _lsub,
    "STATUS": lambda cur, tag, ctx: mailboxargs.status(cur, tag, utf8_mode=ctx.utf8_mode),
    "GETQUOTA": lambda cur, tag, ctx: extargs.getquota(cur, tag),
    "GETQUOTAROOT": lambda cur, tag, ctx: extargs.getquotaroot(
        cur, tag, utf8_mode=ctx.utf8_mode
    ),
    "SETQUOTA": lambda cur, tag, ctx: extargs.setquota(cur, tag),
    "NOTIFY": lambda cur, tag, ctx: extargs.notify(cur, tag, utf8_mode=ctx.utf8_mode),
    "APPEND": _append,
    "SEARCH": _search(uid=False),
    "FETCH": _fetch(uid=False),
    "STORE": _store(uid=False),
    "COPY": _copy_or_move(cmd.Copy, uid=False),
    "MOVE": _copy_or_move(cmd.Move, uid=False),
    "SORT": _sort(uid=False),
    "THREAD": _thread(uid=False),
}

_UID_COMMANDS: dict[str, _Handler] = {
    "SEARCH": _search(uid=True),
    "FETCH": _fetch(uid=True),
    "STORE": _store(uid=True),
    "COPY": _copy_or_move(cmd.Copy, uid=True),
    "MOVE": _copy_or_move(cmd.Move, uid=True),
    "EXPUNGE": _uid_expunge,
    "SORT": _sort(uid=True),
    "THREAD": _thread(uid=True),
}
