"""Rendering the data items of one FETCH response (RFC 9051 §7.5.2, RFC 3516 §4.3,
RFC 7162 §3.1.4.2, RFC 8474 §5.3).

Theory of operation
-------------------
:func:`render_items` turns the requested attributes into the ``msg-att`` items of one
message, each a list of :data:`~.fetch_source.Piece` so that a large body can be streamed
rather than held: ``[b'BODY[] {5242880}\\r\\n', BlobStream(...)]``.

Order: ``UID`` first when the command is UID FETCH (RFC 9051 §6.4.9: servers "MUST
implicitly include the UID message data item as part of any FETCH response caused by a UID
command") or when this fetch set ``\\Seen`` under QRESYNC (RFC 7162 §3.2.4); then
``MODSEQ`` when implied (CHANGEDSINCE, RFC 7162 §3.1.4.1; or a ``\\Seen`` change under
CONDSTORE); then the requested items in request order, each once;
and last ``FLAGS`` when this fetch set ``\\Seen`` and FLAGS was not asked for ("if this
causes the flags to change, they SHOULD be included as part of the FETCH responses",
RFC 9051 §6.4.5). The grammar leaves the order free; this one matches RFC 7162's examples.

Names in responses follow RFC 9051 §7.5.2: no ``.PEEK``, and a partial echoes its origin
octet only (``BODY[]<0>``); RFC822, RFC822.HEADER and RFC822.TEXT keep their IMAP4rev1
names (RFC 3501 §7.4.2). Section contents follow RFC 9051 §6.4.5.1 exactly as
:func:`mailpost.mime.section` does, but locate ranges in the tree first and read only
them, so that a partial, or a part of a message whose tree is cached, reads no more than
it returns:

* a missing part yields the empty string (as ``mime.section``);
* a partial whose origin lies beyond the end yields the empty string, and one that runs
  past the end is truncated but still named with its origin (RFC 9051 §6.4.5);
* BINARY (RFC 3516 §4.3) decodes the part's transfer encoding; the result is a
  ``literal8`` (``~{n}``) only when it contains NUL, otherwise an ordinary literal as the
  RFC recommends; a missing part is NIL, and its BINARY.SIZE 0; an encoding we cannot undo
  raises :class:`~mailpost.mime.UnknownTransferEncoding` (the handler answers
  ``NO [UNKNOWN-CTE]``). ``BINARY[]`` is the whole message as stored.

THREADID is always NIL: the store computes no thread relation, and RFC 8474 §5.2 says a
server that "is unable to calculate relationships between messages ... MUST return NIL".
"""

from __future__ import annotations

from collections.abc import Set as AbstractSet
from dataclasses import dataclass, replace

from mailpost.imap import responses as rsp
from mailpost.imap.fetchatt import (
    BinarySection,
    BinarySize,
    BodySection,
    FetchAttribute,
    FetchItem,
    Partial,
    Section,
    response_name,
)
from mailpost.imap.handlers.fetch_common import date_time
from mailpost.imap.handlers.fetch_source import MessageSource, Piece, piece_length
from mailpost.imap.recent import flags_of
from mailpost.mime import Part, binary, binary_size, body_structure, envelope, find_part
from mailpost.mime.sections import header_fields
from mailpost.store.types import MessageMeta

Item = list[Piece]
Range = tuple[int, int]

_RFC822_SECTIONS = {
    "RFC822": Section(),
    "RFC822.HEADER": Section(text="HEADER"),
    "RFC822.TEXT": Section(text="TEXT"),
}


@dataclass(frozen=True, slots=True)
class FetchOptions:
    """What shapes every response of one FETCH command."""

    attributes: tuple[FetchAttribute, ...]
    uid_command: bool = False
    modseq_implied: bool = False
    condstore: bool = False
    qresync: bool = False
    utf8: bool = False
    message_global: bool = True
    # UIDs that are \Recent for this session (imap.recent); empty for IMAP4rev2 clients.
    recent: AbstractSet[int] = frozenset()


async def render_items(options: FetchOptions, source: MessageSource,
                       seen_now: bool) -> list[Item]:
    """The items of one message's FETCH response; ``seen_now``: this fetch set \\Seen."""
    meta = source.meta
    items: list[Item] = []
    done: set[object] = set()
    if options.uid_command or (seen_now and options.qresync):
        items.append([b"UID %d" % meta.uid])
        done.add(FetchItem("UID"))
    if options.modseq_implied or (seen_now and options.condstore):
        items.append([b"MODSEQ (%d)" % meta.modseq])
        done.add(FetchItem("MODSEQ"))
    for attribute in options.attributes:
        key = _identity(attribute)
        if key not in done:
            done.add(key)
            items.append(await _render(options, source, attribute))
    if seen_now and FetchItem("FLAGS") not in done:
        items.append(_flags(meta, options.recent))
    return items


def _identity(attribute: FetchAttribute) -> object:
    """Requests that produce the same response item (BODY.PEEK[x] and BODY[x] do)."""
    if isinstance(attribute, (BodySection, BinarySection)):
        return replace(attribute, peek=False)
    return attribute


async def _render(options: FetchOptions, source: MessageSource,
                  attribute: FetchAttribute) -> Item:
    if isinstance(attribute, FetchItem):
        return await _simple(options, source, attribute.name)
    if isinstance(attribute, BodySection):
        content = await _section(source, attribute.section)
        return await _literal(source, response_name(attribute), content, attribute.partial)
    if isinstance(attribute, BinarySection):
        return await _binary(source, attribute)
    size = await _binary_size(source, attribute)
    return [b"%s %d" % (response_name(attribute).encode(), size)]


async def _simple(options: FetchOptions, source: MessageSource, name: str) -> Item:
    meta = source.meta
    if name in _RFC822_SECTIONS:
        return await _literal(source, name, await _section(source, _RFC822_SECTIONS[name]),
                              None)
    if name in ("ENVELOPE", "BODY", "BODYSTRUCTURE"):
        return [name.encode() + b" " + await _structure(options, source, name)]
    if name == "FLAGS":
        return _flags(meta, options.recent)
    return [name.encode() + b" " + _metadata_value(meta, name)]


def _metadata_value(meta: MessageMeta, name: str) -> bytes:
    if name == "UID":
        return b"%d" % meta.uid
    if name == "INTERNALDATE":
        return date_time(meta.internal_date)
    if name == "RFC822.SIZE":
        return b"%d" % meta.size
    if name == "MODSEQ":
        return b"(%d)" % meta.modseq
    if name == "EMAILID":
        return b"(" + _email_id(meta).encode("ascii") + b")"
    assert name == "THREADID", name
    return b"NIL"


def _flags(meta: MessageMeta, recent: AbstractSet[int]) -> Item:
    return [b"FLAGS " + rsp.flag_list(flags_of(meta, recent))]


def _email_id(meta: MessageMeta) -> str:
    # RFC 8474 §5.1: stable for the stored content; a store that has no id of its own gets
    # one derived from the immutable body id (never the same as a THREADID: we send none).
    return meta.email_id or "M" + meta.blob_id


async def _structure(options: FetchOptions, source: MessageSource, name: str) -> bytes:
    parsed = await source.parsed()
    utf8, message_global = options.utf8, options.message_global
    if name == "ENVELOPE":
        return parsed.render((name, utf8, False), lambda tree: envelope(tree, utf8=utf8))
    extended = name == "BODYSTRUCTURE"
    return parsed.render((name, utf8, message_global), lambda tree: body_structure(
        tree, extended, utf8=utf8, message_global=message_global))


# --- BODY[section] -------------------------------------------------------------------------


async def _section(source: MessageSource, section: Section) -> Range | bytes:
    """Where section ``section`` lies in the body, or its octets when it is not contiguous
    (HEADER.FIELDS); RFC 9051 §6.4.5.1."""
    if not section.part:
        if section.text is None:
            return (0, source.size)
        return await _message_text(source, await source.header_span(), section)
    part = find_part(await source.tree(), section.part)
    if part is None:
        return b""
    if section.text is None:
        return (part.body_start, part.end)
    if section.text == "MIME":
        return (part.start, part.body_start)
    if not part.is_message:
        return b""  # HEADER/TEXT need a MESSAGE/RFC822 or MESSAGE/GLOBAL part
    return await _message_text(source, part.children[0], section)


async def _message_text(source: MessageSource, message: Part,
                        section: Section) -> Range | bytes:
    if section.text == "TEXT":
        return (message.body_start, message.end)
    if section.text == "HEADER":
        return (message.start, message.body_start)
    data, shifted = await source.part_window(replace(message, end=message.body_start),
                                             message.start)
    names = tuple(name.encode("utf-8", "surrogateescape") for name in section.fields)
    return header_fields(data, shifted, names, exclude=section.text == "HEADER.FIELDS.NOT")


async def _literal(source: MessageSource, name: str, content: Range | bytes,
                   partial: Partial | None) -> Item:
    """``name {n}\\r\\n`` and the octets, a partial applied first (RFC 9051 §6.4.5)."""
    if isinstance(content, tuple):
        piece: Piece = await source.octets(*_narrow(content, partial))
    else:
        start, end = _narrow((0, len(content)), partial)
        piece = content[start:end]
    # The length of what will really be sent, so the literal can never be mis-framed.
    return [name.encode("utf-8") + b" " + rsp.literal_header(piece_length(piece)), piece]


def _narrow(span: Range, partial: Partial | None) -> Range:
    start, end = span
    if partial is None:
        return span
    first = min(start + partial.offset, end)
    return first, min(end, first + partial.length)


# --- BINARY ----------------------------------------------------------------------------------


async def _decoded(source: MessageSource, path: tuple[int, ...]) -> bytes | None:
    """The content of part ``path`` with its transfer encoding removed; None if missing."""
    part = find_part(await source.tree(), path)
    if part is None:
        return None
    data, shifted = await source.part_window(part, part.body_start)
    return binary(data, shifted)


async def _binary(source: MessageSource, attribute: BinarySection) -> Item:
    name = response_name(attribute).encode()
    if not attribute.part:
        return await _literal(source, response_name(attribute), (0, source.size),
                              attribute.partial)
    decoded = await _decoded(source, attribute.part)
    if decoded is None:
        return [name + b" NIL"]
    start, end = _narrow((0, len(decoded)), attribute.partial)
    content = decoded[start:end]
    header = rsp.literal_header(len(content), binary=b"\x00" in content)
    return [name + b" " + header, content]


async def _binary_size(source: MessageSource, attribute: BinarySize) -> int:
    if not attribute.part:
        return source.size
    part = find_part(await source.tree(), attribute.part)
    if part is None:
        return 0
    data, shifted = await source.part_window(part, part.body_start)
    return binary_size(data, shifted)
