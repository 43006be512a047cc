"""SEARCH keys (RFC 9051 §6.4.4, RFC 3501 §6.4.4, RFC 7162 §3.1.5, RFC 8474 §5): tree,
parser and renderer.

Theory of operation
-------------------
A search program becomes a small tree of frozen dataclasses (:data:`SearchKey`). The tree is
*normalised* so the session has fewer cases to evaluate:

* every flag test is a :class:`FlagKey`: ``SEEN`` is ``FlagKey("\\Seen", True)``, ``UNSEEN``
  is ``FlagKey("\\Seen", False)``, ``KEYWORD $Junk`` is ``FlagKey("$Junk", True)``, ``OLD``
  is ``FlagKey("\\Recent", False)`` and ``NEW`` is ``RECENT UNSEEN`` (RFC 3501 §6.4.4);
* ``BCC``/``CC``/``FROM``/``SUBJECT``/``TO`` and ``HEADER name`` are one :class:`HeaderKey`
  with the field name upper-cased;
* a search program or a parenthesised list of two or more keys is an :class:`AndKey`; a
  parenthesised single key is that key.

The parser is **iterative**: ``NOT``, ``OR`` and ``(`` push frames on an explicit stack, and
every frame counts against the cursor's nesting limit. ``NOT NOT NOT ...`` ten thousand
times, or four thousand ``(``, therefore ends in ``BAD [LIMIT]`` at depth ``max_depth`` and
never in ``RecursionError`` (security catalogue I4, Dovecot CVE-2026-27857).

:func:`render_search_key` is the inverse (client direction, used by tests and logs);
``parse(render(key)) == key`` holds for every normalised tree.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal as Lit

from mailpost.imap.cursor import MONTHS, Cursor, render_astring, utf8
from mailpost.imap.errors import ParseError
from mailpost.imap.seqset import SequenceSet

SYSTEM_FLAG_KEYS = {
    "\\Answered": "ANSWERED",
    "\\Deleted": "DELETED",
    "\\Draft": "DRAFT",
    "\\Flagged": "FLAGGED",
    "\\Seen": "SEEN",
    "\\Recent": "RECENT",
}


@dataclass(frozen=True, slots=True)
class AllKey:
    """``ALL``: every message."""


@dataclass(frozen=True, slots=True)
class FlagKey:
    """A system flag (``\\Seen``) or keyword (``$Junk``) that must be set (``present``) or not."""

    flag: str
    present: bool = True


@dataclass(frozen=True, slots=True)
class HeaderKey:
    """Substring match in a header field; ``field`` upper-case, ``value`` may be empty
    (RFC 9051 §6.4.4: ``HEADER name ""`` matches every message having that field)."""

    field: str
    value: str


@dataclass(frozen=True, slots=True)
class TextKey:
    """``BODY`` (body only) or ``TEXT`` (header and body) substring match."""

    where: Lit["BODY", "TEXT"]
    value: str


@dataclass(frozen=True, slots=True)
class DateKey:
    """``BEFORE/ON/SINCE`` (internal date) or ``SENT*`` (Date: header), ignoring time and zone."""

    field: Lit["INTERNAL", "SENT"]
    op: Lit["BEFORE", "ON", "SINCE"]
    date: dt.date


@dataclass(frozen=True, slots=True)
class SizeKey:
    """``LARGER n`` / ``SMALLER n`` on RFC822.SIZE (``number64``)."""

    op: Lit["LARGER", "SMALLER"]
    size: int


@dataclass(frozen=True, slots=True)
class SequenceKey:
    """A sequence set of message numbers, or of UIDs after the ``UID`` key."""

    set: SequenceSet
    uid: bool = False


@dataclass(frozen=True, slots=True)
class ModSeqKey:
    """``MODSEQ [entry type] n`` (RFC 7162 §3.1.5); ``entry`` is the flag of
    ``"/flags/<flag>"`` and ``entry_type`` one of ``priv``/``shared``/``all``."""

    modseq: int
    entry: str | None = None
    entry_type: str | None = None


@dataclass(frozen=True, slots=True)
class ObjectIdKey:
    """``EMAILID x`` / ``THREADID x`` (RFC 8474 §5); ObjectIDs are case-sensitive."""

    kind: Lit["EMAILID", "THREADID"]
    value: str


@dataclass(frozen=True, slots=True)
class NotKey:
    key: SearchKey


@dataclass(frozen=True, slots=True)
class OrKey:
    left: SearchKey
    right: SearchKey


@dataclass(frozen=True, slots=True)
class AndKey:
    """All of ``keys`` (always two or more)."""

    keys: tuple[SearchKey, ...]


SearchKey = (
    AllKey | FlagKey | HeaderKey | TextKey | DateKey | SizeKey | SequenceKey | ModSeqKey
    | ObjectIdKey | NotKey | OrKey | AndKey
)


# --- parsing ------------------------------------------------------------------------------


@dataclass(slots=True)
class _Frame:
    kind: Lit["TOP", "AND", "NOT", "OR"]
    keys: list[SearchKey] = field(default_factory=list)


def parse_search_program(cur: Cursor) -> SearchKey:
    """Parse ``search-key *(SP search-key)`` up to the end of the command."""
    stack = [_Frame("TOP")]
    while True:
        key = _operand(cur, stack)
        while key is not None:
            top = stack[-1]
            top.keys.append(key)
            key = _reduce(cur, stack, top)
            if key is None and top.kind == "TOP" and cur.at_end():
                return _all_of(top.keys)


def _reduce(cur: Cursor, stack: list[_Frame], top: _Frame) -> SearchKey | None:
    """After a key was added to ``top``: close finished frames, or consume the separator."""
    if top.kind == "NOT":
        return _pop(cur, stack, NotKey(top.keys[0]))
    if top.kind == "OR":
        if len(top.keys) == 2:
            return _pop(cur, stack, OrKey(top.keys[0], top.keys[1]))
        cur.sp()
        return None
    if top.kind == "AND" and cur.accept(b")"):
        return _pop(cur, stack, _all_of(top.keys))
    if not (top.kind == "TOP" and cur.at_end()):
        cur.sp()
    return None


def _pop(cur: Cursor, stack: list[_Frame], key: SearchKey) -> SearchKey:
    stack.pop()
    cur.leave()
    return key


def _all_of(keys: list[SearchKey]) -> SearchKey:
    return keys[0] if len(keys) == 1 else AndKey(tuple(keys))


def _operand(cur: Cursor, stack: list[_Frame]) -> SearchKey | None:
    """One simple key, or None after pushing a frame for ``(``, ``NOT`` or ``OR``."""
    if cur.accept(b"("):
        cur.enter()
        stack.append(_Frame("AND"))
        return None
    if 0 <= cur.peek() and cur.peek() in b"0123456789*$":
        return SequenceKey(cur.sequence_set())
    name = cur.keyword()
    if name in ("NOT", "OR"):
        cur.sp()
        cur.enter()
        stack.append(_Frame("NOT" if name == "NOT" else "OR"))
        return None
    parser = _SIMPLE_KEYS.get(name)
    if parser is None:
        raise ParseError(f"Unknown search key {name[:40]}")
    return parser(cur, name)


def _text_argument(cur: Cursor) -> str:
    cur.sp()
    return utf8(cur.astring(), "search string")


def _flag(cur: Cursor, name: str) -> SearchKey:
    if name == "ALL":
        return AllKey()
    if name == "NEW":
        return AndKey((FlagKey("\\Recent"), FlagKey("\\Seen", False)))
    if name == "OLD":
        return FlagKey("\\Recent", False)
    present = not name.startswith("UN")
    base = name[2:] if not present else name
    return FlagKey("\\" + base.capitalize(), present)


def _keyword(cur: Cursor, name: str) -> SearchKey:
    cur.sp()
    return FlagKey(cur.atom(), name == "KEYWORD")


def _header_shortcut(cur: Cursor, name: str) -> SearchKey:
    return HeaderKey(name, _text_argument(cur))


def _header(cur: Cursor, name: str) -> SearchKey:
    cur.sp()
    field_name = utf8(cur.astring(), "header name").upper()
    return HeaderKey(field_name, _text_argument(cur))


def _text(cur: Cursor, name: str) -> SearchKey:
    return TextKey("BODY" if name == "BODY" else "TEXT", _text_argument(cur))


_DateField = Lit["INTERNAL", "SENT"]
_DateOp = Lit["BEFORE", "ON", "SINCE"]
_DATE_KEYS: dict[str, tuple[_DateField, _DateOp]] = {
    "BEFORE": ("INTERNAL", "BEFORE"),
    "ON": ("INTERNAL", "ON"),
    "SINCE": ("INTERNAL", "SINCE"),
    "SENTBEFORE": ("SENT", "BEFORE"),
    "SENTON": ("SENT", "ON"),
    "SENTSINCE": ("SENT", "SINCE"),
}


def _date(cur: Cursor, name: str) -> SearchKey:
    cur.sp()
    field_name, op = _DATE_KEYS[name]
    return DateKey(field_name, op, cur.date())


def _size(cur: Cursor, name: str) -> SearchKey:
    cur.sp()
    return SizeKey("LARGER" if name == "LARGER" else "SMALLER", cur.number64())


def _uid(cur: Cursor, name: str) -> SearchKey:
    cur.sp()
    return SequenceKey(cur.sequence_set(), uid=True)


def _modseq(cur: Cursor, name: str) -> SearchKey:
    cur.sp()
    entry = entry_type = None
    if cur.peek() == 0x22:  # search-modseq-ext = SP entry-name SP entry-type-req
        entry = _flag_entry(cur.quoted().decode("utf-8"))
        cur.sp()
        entry_type = cur.keyword().lower()
        if entry_type not in ("priv", "shared", "all"):
            raise ParseError("MODSEQ entry type must be priv, shared or all")
        cur.sp()
    return ModSeqKey(cur.number64(), entry, entry_type)


def _flag_entry(entry: str) -> str:
    """``"/flags/" attr-flag`` (RFC 7162 §7) -> the flag."""
    if not entry.lower().startswith("/flags/") or len(entry) == len("/flags/"):
        raise ParseError("MODSEQ entry name must be /flags/<flag>")
    return entry[len("/flags/") :]


def _object_id(cur: Cursor, name: str) -> SearchKey:
    cur.sp()
    value = cur.atom()
    if not (len(value) <= 255 and all(ch.isalnum() or ch in "_-" for ch in value)):
        raise ParseError("Invalid ObjectID")
    return ObjectIdKey("EMAILID" if name == "EMAILID" else "THREADID", value)


_SimpleParser = Callable[[Cursor, str], SearchKey]
_SIMPLE_KEYS: dict[str, _SimpleParser] = {
    **{
        name: _flag
        for name in (
            "ALL", "ANSWERED", "DELETED", "DRAFT", "FLAGGED", "SEEN", "RECENT", "NEW", "OLD",
            "UNANSWERED", "UNDELETED", "UNDRAFT", "UNFLAGGED", "UNSEEN",
        )
    },
    "KEYWORD": _keyword,
    "UNKEYWORD": _keyword,
    **{name: _header_shortcut for name in ("BCC", "CC", "FROM", "SUBJECT", "TO")},
    "HEADER": _header,
    "BODY": _text,
    "TEXT": _text,
    **{name: _date for name in _DATE_KEYS},
    "LARGER": _size,
    "SMALLER": _size,
    "UID": _uid,
    "MODSEQ": _modseq,
    "EMAILID": _object_id,
    "THREADID": _object_id,
}


# --- helpers for the session ----------------------------------------------------------------


def uses_modseq(key: SearchKey) -> bool:
    """True if the tree has a MODSEQ key (RFC 7162 §3.1.5: this enables CONDSTORE)."""
    return any(isinstance(node, ModSeqKey) for node in walk(key))


def walk(key: SearchKey) -> list[SearchKey]:
    """Every node of the tree, iteratively (pre-order)."""
    out: list[SearchKey] = []
    pending = [key]
    while pending:
        node = pending.pop()
        out.append(node)
        if isinstance(node, NotKey):
            pending.append(node.key)
        elif isinstance(node, OrKey):
            pending.extend((node.right, node.left))
        elif isinstance(node, AndKey):
            pending.extend(reversed(node.keys))
    return out


# --- rendering (client direction) -----------------------------------------------------------

_HEADER_SHORTCUTS = frozenset({"BCC", "CC", "FROM", "SUBJECT", "TO"})


def render_search_key(key: SearchKey, *, top: bool = True) -> bytes:
    """Wire form of ``key``; strings that cannot be quoted become ``{n+}`` literals."""
    if isinstance(key, AndKey):
        inner = b" ".join(render_search_key(k, top=False) for k in key.keys)
        return inner if top else b"(" + inner + b")"
    if isinstance(key, NotKey):
        return b"NOT " + render_search_key(key.key, top=False)
    if isinstance(key, OrKey):
        left = render_search_key(key.left, top=False)
        return b"OR " + left + b" " + render_search_key(key.right, top=False)
    return _render_simple(key)


def _render_simple(key: SearchKey) -> bytes:
    if isinstance(key, AllKey):
        return b"ALL"
    if isinstance(key, FlagKey):
        return _render_flag(key)
    if isinstance(key, HeaderKey):
        value = render_astring(key.value)
        if key.field in _HEADER_SHORTCUTS:
            return key.field.encode() + b" " + value
        return b"HEADER " + render_astring(key.field) + b" " + value
    if isinstance(key, TextKey):
        return key.where.encode() + b" " + render_astring(key.value)
    if isinstance(key, DateKey):
        prefix = "SENT" if key.field == "SENT" else ""
        date = f"{key.date.day}-{MONTHS[key.date.month - 1].capitalize()}-{key.date.year:04d}"
        return f"{prefix}{key.op} {date}".encode()
    if isinstance(key, SizeKey):
        return f"{key.op} {key.size}".encode()
    if isinstance(key, SequenceKey):
        return (b"UID " if key.uid else b"") + str(key.set).encode()
    if isinstance(key, ModSeqKey):
        return _render_modseq(key)
    if isinstance(key, ObjectIdKey):
        return f"{key.kind} {key.value}".encode()
    raise TypeError(f"not a search key: {key!r}")


def _render_flag(key: FlagKey) -> bytes:
    name = SYSTEM_FLAG_KEYS.get(key.flag)
    if name is None:
        return (b"KEYWORD " if key.present else b"UNKEYWORD ") + key.flag.encode()
    if key.present:
        return name.encode()
    return b"OLD" if name == "RECENT" else b"UN" + name.encode()


def _render_modseq(key: ModSeqKey) -> bytes:
    if key.entry is None:
        return f"MODSEQ {key.modseq}".encode()
    entry = ("/flags/" + key.entry).replace("\\", "\\\\").replace('"', '\\"')
    return f'MODSEQ "{entry}" {key.entry_type} {key.modseq}'.encode()
