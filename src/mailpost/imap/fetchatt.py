"""FETCH attributes (RFC 9051 §6.4.5, RFC 3501 §6.4.5, RFC 3516, RFC 7162, RFC 8474).

Theory of operation
-------------------
A FETCH request is a tuple of :data:`FetchAttribute` values, macros already expanded
(RFC 9051 §6.4.5: ``ALL`` = ``FLAGS INTERNALDATE RFC822.SIZE ENVELOPE``, ``FAST`` = the same
without ``ENVELOPE``, ``FULL`` = ``ALL`` plus ``BODY``). Four shapes cover the grammar:

* :class:`FetchItem` for the items without arguments: ``ENVELOPE``, ``FLAGS``,
  ``INTERNALDATE``, ``RFC822``, ``RFC822.HEADER``, ``RFC822.SIZE``, ``RFC822.TEXT``,
  ``BODY`` (non-extensible structure), ``BODYSTRUCTURE``, ``UID``, ``MODSEQ`` (RFC 7162
  §3.1.4.1), ``EMAILID`` and ``THREADID`` (RFC 8474 §5);
* :class:`BodySection` for ``BODY[section]<partial>`` and ``BODY.PEEK[...]``;
* :class:`BinarySection` for ``BINARY[part]<partial>`` and ``BINARY.PEEK[...]``;
* :class:`BinarySize` for ``BINARY.SIZE[part]``.

The session renders its answers with :func:`response_name` (``BODY.PEEK[HEADER]<0.100>`` is
answered as ``BODY[HEADER]<0>``, RFC 9051 §7.5.2) and asks :func:`sets_seen` whether the
item implicitly sets ``\\Seen`` (RFC 9051 §6.4.5: non-PEEK ``BODY[...]`` and ``BINARY[...]``;
RFC 3501 adds ``RFC822`` and ``RFC822.TEXT``).

Section part numbers are ``nz-number`` (32-bit, no leading zero) and a part path is at most
``max_depth`` levels deep, so a client cannot make the session walk an unbounded path.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from mailpost.imap.cursor import MAX_NUMBER, Cursor, render_astring, utf8
from mailpost.imap.errors import ParseError

SIMPLE_ITEMS = frozenset(
    {
        "ENVELOPE", "FLAGS", "INTERNALDATE", "RFC822", "RFC822.HEADER", "RFC822.SIZE",
        "RFC822.TEXT", "BODY", "BODYSTRUCTURE", "UID", "MODSEQ", "EMAILID", "THREADID",
    }
)
MACROS: dict[str, tuple[str, ...]] = {
    "ALL": ("FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE"),
    "FAST": ("FLAGS", "INTERNALDATE", "RFC822.SIZE"),
    "FULL": ("FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE", "BODY"),
}
_NAME = re.compile(rb"[A-Za-z0-9.]+")
_PART = re.compile(rb"[0-9]+(?:\.[0-9]+)*")
_SECTION_TEXT = re.compile(rb"HEADER\.FIELDS\.NOT|HEADER\.FIELDS|HEADER|TEXT|MIME", re.IGNORECASE)
_PARTIAL = re.compile(rb"<([0-9]+)\.([0-9]+)>")
_PART_PEEK = re.compile(rb"(?=[0-9])")  # zero-width: does a part number follow?
_MAX_NUMBER64 = 2**63 - 1


@dataclass(frozen=True, slots=True)
class Section:
    """``section-spec``: a part path and what of it (RFC 9051 §6.4.5).

    ``text`` is None (the whole part), ``"HEADER"``, ``"HEADER.FIELDS"``,
    ``"HEADER.FIELDS.NOT"``, ``"TEXT"`` or ``"MIME"`` (the last only after a part number);
    ``fields`` holds the header-list of the two ``HEADER.FIELDS`` forms.
    """

    part: tuple[int, ...] = ()
    text: str | None = None
    fields: tuple[str, ...] = ()

    def render(self) -> str:
        spec = ".".join(str(n) for n in self.part)
        if self.text is not None:
            spec = f"{spec}.{self.text}" if spec else self.text
        if self.fields:
            names = b" ".join(render_astring(name) for name in self.fields).decode("utf-8")
            spec += f" ({names})"
        return f"[{spec}]"


@dataclass(frozen=True, slots=True)
class Partial:
    """``<offset.length>``: ``length`` octets from 0-based ``offset`` (``number64``)."""

    offset: int
    length: int


@dataclass(frozen=True, slots=True)
class FetchItem:
    """An item without arguments; ``name`` is upper-case, one of :data:`SIMPLE_ITEMS`."""

    name: str


@dataclass(frozen=True, slots=True)
class BodySection:
    section: Section
    partial: Partial | None = None
    peek: bool = False


@dataclass(frozen=True, slots=True)
class BinarySection:
    """``BINARY[part]``: the part with its content-transfer-encoding removed (RFC 3516)."""

    part: tuple[int, ...] = ()
    partial: Partial | None = None
    peek: bool = False


@dataclass(frozen=True, slots=True)
class BinarySize:
    part: tuple[int, ...] = ()


FetchAttribute = FetchItem | BodySection | BinarySection | BinarySize


# --- parsing ------------------------------------------------------------------------------


def parse_fetch_attributes(cur: Cursor) -> tuple[FetchAttribute, ...]:
    """``"ALL" / "FULL" / "FAST" / fetch-att / "(" fetch-att *(SP fetch-att) ")"``."""
    if cur.accept(b"("):
        items = [parse_fetch_att(cur)]
        while not cur.accept(b")"):
            cur.sp()
            items.append(parse_fetch_att(cur))
        return tuple(items)
    start = cur.match(_NAME)
    if start is not None and start.group().upper().decode() in MACROS:
        return tuple(FetchItem(name) for name in MACROS[start.group().upper().decode()])
    if start is not None:
        return (_fetch_att_named(cur, start.group().upper().decode()),)
    raise ParseError("Expected FETCH attributes")


def parse_fetch_att(cur: Cursor) -> FetchAttribute:
    found = cur.match(_NAME)
    if found is None:
        raise ParseError("Expected a FETCH attribute")
    return _fetch_att_named(cur, found.group().upper().decode())


def _fetch_att_named(cur: Cursor, name: str) -> FetchAttribute:
    if cur.peek() == ord("["):
        return _sectioned(cur, name)
    if name in SIMPLE_ITEMS:
        return FetchItem(name)
    raise ParseError(f"Unknown FETCH attribute {name[:40]}")


def _sectioned(cur: Cursor, name: str) -> FetchAttribute:
    if name in ("BODY", "BODY.PEEK"):
        section = _section(cur)
        return BodySection(section, _partial(cur), peek=name == "BODY.PEEK")
    if name in ("BINARY", "BINARY.PEEK"):
        part = _section_binary(cur)
        return BinarySection(part, _partial(cur), peek=name == "BINARY.PEEK")
    if name == "BINARY.SIZE":
        return BinarySize(_section_binary(cur))
    raise ParseError(f"{name[:40]} takes no section")


def _section(cur: Cursor) -> Section:
    cur.expect(b"[")
    if cur.accept(b"]"):
        return Section()
    part: tuple[int, ...] = ()
    if cur.match(_PART_PEEK) is not None:
        part = _part_numbers(cur)
        if cur.accept(b"]"):
            return Section(part)
        cur.expect(b".")
    found = cur.match(_SECTION_TEXT)
    if found is None:
        raise ParseError("Invalid section")
    text = found.group().upper().decode()
    if text == "MIME" and not part:
        raise ParseError("MIME needs a part number")
    fields: tuple[str, ...] = ()
    if text.startswith("HEADER.FIELDS"):
        cur.sp()
        fields = _header_list(cur)
    cur.expect(b"]")
    return Section(part, text, fields)


def _part_numbers(cur: Cursor) -> tuple[int, ...]:
    found = cur.match(_PART)
    assert found is not None
    pieces = found.group().split(b".")
    if len(pieces) > cur.max_depth:
        raise ParseError("Section part path too deep", code="LIMIT")
    if any(p.startswith(b"0") or len(p) > 10 or int(p) > MAX_NUMBER for p in pieces):
        raise ParseError("Invalid section part number")
    return tuple(int(p) for p in pieces)


def _section_binary(cur: Cursor) -> tuple[int, ...]:
    cur.expect(b"[")
    part: tuple[int, ...] = ()
    if cur.match(_PART_PEEK) is not None:
        part = _part_numbers(cur)
    cur.expect(b"]")
    return part


def _header_list(cur: Cursor) -> tuple[str, ...]:
    cur.expect(b"(")
    names = [utf8(cur.astring(), "header field name")]
    while not cur.accept(b")"):
        cur.sp()
        names.append(utf8(cur.astring(), "header field name"))
    return tuple(names)


def _partial(cur: Cursor) -> Partial | None:
    if cur.peek() != ord("<"):
        return None
    found = cur.match(_PARTIAL)
    if found is None:
        raise ParseError("Invalid partial range")
    offset, length = found.group(1), found.group(2)
    if length.startswith(b"0") or max(len(offset), len(length)) > 19:
        raise ParseError("Invalid partial range")
    if int(offset) > _MAX_NUMBER64 or int(length) > _MAX_NUMBER64:
        raise ParseError("Invalid partial range")
    return Partial(int(offset), int(length))


# --- helpers for the session ----------------------------------------------------------------


def render_fetch_att(att: FetchAttribute) -> str:
    """The request form, e.g. ``BODY.PEEK[HEADER.FIELDS (From)]<0.100>``."""
    if isinstance(att, FetchItem):
        return att.name
    if isinstance(att, BodySection):
        name = "BODY.PEEK" if att.peek else "BODY"
        return name + att.section.render() + _render_partial(att.partial, full=True)
    if isinstance(att, BinarySection):
        name = "BINARY.PEEK" if att.peek else "BINARY"
        return name + _part(att.part) + _render_partial(att.partial, full=True)
    return "BINARY.SIZE" + _part(att.part)


def response_name(att: FetchAttribute) -> str:
    """The item name in the FETCH response: no ``.PEEK``, partial as ``<origin>`` only."""
    if isinstance(att, BodySection):
        return "BODY" + att.section.render() + _render_partial(att.partial, full=False)
    if isinstance(att, BinarySection):
        return "BINARY" + _part(att.part) + _render_partial(att.partial, full=False)
    return render_fetch_att(att)


def sets_seen(att: FetchAttribute) -> bool:
    """True if fetching ``att`` sets ``\\Seen`` (RFC 9051 §6.4.5, RFC 3501 §6.4.5)."""
    if isinstance(att, (BodySection, BinarySection)):
        return not att.peek
    return isinstance(att, FetchItem) and att.name in ("RFC822", "RFC822.TEXT")


def _part(part: tuple[int, ...]) -> str:
    return "[" + ".".join(str(n) for n in part) + "]"


def _render_partial(partial: Partial | None, *, full: bool) -> str:
    if partial is None:
        return ""
    return f"<{partial.offset}.{partial.length}>" if full else f"<{partial.offset}>"
