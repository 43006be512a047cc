"""FETCH BODY[<section>] extraction (RFC 9051 §6.4.5.1).

Theory of operation
-------------------
A section is a part path (``1.2.3``, possibly empty) and an optional text specifier: HEADER,
HEADER.FIELDS (names), HEADER.FIELDS.NOT (names), TEXT or MIME. :func:`parse_section` reads the
textual form, :class:`SectionSpec` is the parsed one (the IMAP command parser may build it
directly), and :func:`section` returns the octets. A syntactically invalid section raises
:class:`InvalidSection` (the IMAP layer answers BAD); a well-formed section that names no
existing part gives ``b""``.

Part numbers are resolved as RFC 9051 §6.4.5.1 describes (and, but for one corner noted in
:func:`find_part`, as Dovecot does):

* In a multipart, ``N`` is its Nth body part. A non-multipart entity has only part 1, which is
  its body ("Messages that do not use MIME, and MIME messages that are not multipart and have
  no encapsulated message within them, only have a part 1").
* When a message/rfc822 (or message/global) part is followed by more part numbers, they refer
  to the encapsulated message's body: ``3.1`` is the first part of the multipart inside part 3,
  or, if that message is not multipart, its body.

What each specifier returns:

* no specifier: the whole message for the empty path, otherwise the part's body (its MIME
  header excluded);
* MIME: the part's MIME header with its blank line ("The MIME part specifier refers to the
  [MIME-IMB] header for this part"); for part 1 of a non-multipart message that is the message
  header, for a part inside an encapsulated non-multipart message the encapsulated header;
* HEADER, HEADER.FIELDS[.NOT], TEXT: for the empty path the message itself; otherwise the part
  must be message/rfc822 or message/global and they apply to the message inside it; "provided
  that the numeric part specifier refers to a part of type MESSAGE/RFC822 or MESSAGE/GLOBAL",
  anything else returns nothing.

HEADER.FIELDS keeps the fields whose name matches one of the list, ASCII case-insensitively,
each with its folded continuation lines and in message order; .NOT keeps the others, including
lines that are not fields at all. "Subsetting does not exclude the [RFC5322] delimiting blank
line between the header and the body; the blank line is included in all header fetches, except
in the case of a message that has no body and no blank line." Matching is one compiled regex
over the header block, so the cost is linear whatever the number of fields.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from mailpost.mime.part import Part

_MSGTEXT = frozenset({"HEADER", "HEADER.FIELDS", "HEADER.FIELDS.NOT", "TEXT"})
_SECTION = re.compile(
    r"(?P<path>[1-9][0-9]{0,8}(?:\.[1-9][0-9]{0,8})*)?"
    r"(?:(?(path)\.)(?P<text>HEADER\.FIELDS\.NOT|HEADER\.FIELDS|HEADER|TEXT|MIME))?"
    r"(?:[ ]\((?P<fields>[^()]*)\))?",
    re.IGNORECASE)
_FIELD_NAME = re.compile(r'"((?:[^"\\]|\\.)*)"|([^\s"]+)')


class InvalidSection(ValueError):
    """The section text does not follow RFC 9051's ``section-spec`` grammar."""


@dataclass(frozen=True, slots=True)
class SectionSpec:
    """A parsed ``section-spec``: part path, text specifier (upper case) and field names."""

    part: tuple[int, ...] = ()
    text: str | None = None
    fields: tuple[bytes, ...] = ()


def parse_section(spec: str) -> SectionSpec:
    """Parse what is between the brackets of ``BODY[...]``, e.g. ``1.2.MIME`` or
    ``HEADER.FIELDS (From "To")``. Raises :class:`InvalidSection`."""
    match = _SECTION.fullmatch(spec)
    if match is None:
        raise InvalidSection(f"bad section {spec!r}")
    path = tuple(int(n) for n in match.group("path").split(".")) if match.group("path") else ()
    text = match.group("text").upper() if match.group("text") else None
    raw_fields = match.group("fields")
    if (raw_fields is not None) != (text in ("HEADER.FIELDS", "HEADER.FIELDS.NOT")):
        raise InvalidSection("a header list goes with HEADER.FIELDS and only with it")
    fields = () if raw_fields is None else _field_names(raw_fields)
    if raw_fields is not None and not fields:
        raise InvalidSection("empty header list")
    if text == "MIME" and not path:
        raise InvalidSection("MIME needs a part number")
    return SectionSpec(path, text, fields)


def _field_names(raw: str) -> tuple[bytes, ...]:
    names = []
    for match in _FIELD_NAME.finditer(raw):
        quoted, atom = match.group(1), match.group(2)
        name = re.sub(r"\\(.)", r"\1", quoted) if quoted is not None else atom
        names.append(name.encode("utf-8", "surrogateescape"))
    return tuple(names)


def find_part(root: Part, path: tuple[int, ...]) -> Part | None:
    """The part a non-empty part path names (RFC 9051 §6.4.5.1), or None.

    Only a *message* (the root, or one encapsulated in a message part) that is not multipart
    has a part 1 of its own; a leaf body part reached through a multipart has no sub-parts
    (Dovecot would take ``1.1`` of a text part to be the part itself; nothing in the RFC
    numbers it so).
    """
    part = root
    for index, number in enumerate(path):
        more = index + 1 < len(path)
        if part.is_multipart:
            if number > len(part.children):
                return None
            part = part.children[number - 1]
        elif part.envelope is None or number != 1 or (more and not part.is_message):
            return None
        if more and part.is_message:
            part = part.children[0]
    return part


def section(data: bytes, root: Part, spec: SectionSpec | str) -> bytes:
    """The octets of section ``spec`` of the message ``data`` parsed as ``root``."""
    if isinstance(spec, str):
        spec = parse_section(spec)
    if spec.text is not None and spec.text not in _MSGTEXT and spec.text != "MIME":
        raise InvalidSection(f"unknown section text {spec.text!r}")
    if not spec.part:
        if spec.text == "MIME":
            raise InvalidSection("MIME needs a part number")
        if spec.text is None:
            return data[root.start:root.end]
        return _message_text(data, root, spec)
    part = find_part(root, spec.part)
    if part is None:
        return b""
    if spec.text is None:
        return data[part.body_start:part.end]
    if spec.text == "MIME":
        return data[part.start:part.body_start]
    if not part.is_message:
        return b""
    return _message_text(data, part.children[0], spec)


def _message_text(data: bytes, message: Part, spec: SectionSpec) -> bytes:
    """HEADER, HEADER.FIELDS[.NOT] or TEXT of a message header part."""
    if spec.text == "TEXT":
        return data[message.body_start:message.end]
    if spec.text == "HEADER":
        return data[message.start:message.body_start]
    return header_fields(data, message, spec.fields, exclude=spec.text == "HEADER.FIELDS.NOT")


def header_fields(data: bytes, message: Part, names: tuple[bytes, ...], *,
                  exclude: bool = False) -> bytes:
    """The header fields of ``message`` named (or, with ``exclude``, not named) in ``names``,
    followed by the header's blank line when it has one."""
    start, end = message.start, message.header_end
    spans = [match.span() for match in _fields_pattern(names).finditer(data, start, end)]
    if exclude:
        kept, pos = [], start
        for span_start, span_end in spans:
            kept.append(data[pos:span_start])
            pos = span_end
        kept.append(data[pos:end])
    else:
        kept = [data[span_start:span_end] for span_start, span_end in spans]
    kept.append(data[message.header_end:message.body_start])
    return b"".join(kept)


def _fields_pattern(names: tuple[bytes, ...]) -> re.Pattern[bytes]:
    """Whole fields (first line and folded continuation lines) whose name is in ``names``."""
    if not names:
        return re.compile(rb"(?!)")
    alternatives = b"|".join(re.escape(name) for name in names)
    return re.compile(rb"^(?:" + alternatives + rb")[ \t]*:[^\n]*\n?(?:[ \t][^\n]*\n?)*",
                      re.MULTILINE | re.IGNORECASE)
