"""Build the MIME part tree of a message, with byte offsets, in one forward pass.

Theory of operation
-------------------
:func:`parse_message` walks the message once, front to back, keeping a stack of the boundaries
of the multiparts it is inside (innermost last), the way Dovecot's message parser does:

* An entity (the message, a body part, an encapsulated message) starts with its header. The
  header ends at the first empty line, or earlier at a delimiter line of an enclosing
  multipart (then the entity has no body).
* A delimiter line is ``"--" boundary`` at the start of a line, where the boundary need only be
  a *prefix* of the rest of the line (RFC 2046 §5.1.1: "it is sufficient that the boundary
  appear in its entirety following the CRLF"); so trailing white space and junk after it are
  accepted. ``"--"`` right after the boundary makes it the close delimiter. The line break
  before a delimiter line belongs to the delimiter, not to the part it ends (RFC 2046 §5.1.1:
  "The CRLF preceding the boundary delimiter line is conceptually attached to the boundary").
* When several boundaries of the stack match a line, the longest wins, and an identical one
  belongs to the innermost multipart ("nested identical boundaries"): the inner multipart
  consumes the delimiters until its own close delimiter pops it.
* A delimiter of an *enclosing* multipart ends every entity below it, which is how a missing
  close delimiter is survived; end of data ends everything still open.
* A multipart's body is preamble, children, close delimiter and epilogue; the epilogue runs to
  the next enclosing delimiter or the end of the data. A message/rfc822 (or message/global)
  part has one child, the encapsulated message, which spans its whole body.

Delimiter lines are found by :mod:`mailpost.mime.delimiters` with ``bytes.find``, remembering
what it found, so bodies are scanned in C, never by Python loops, and each octet about once per
boundary (M1/M2 of the security catalogue). Empty lines and header fields are found by regexes
(:mod:`mailpost.mime.headers`) confined to the header, which ends before the next delimiter.

Defaults (RFC 2045 §5.2, RFC 2046 §5.1.5): no or an invalid Content-Type means text/plain;
charset=us-ascii, except inside multipart/digest where it means message/rfc822. Content-Type is
honoured whether or not MIME-Version is present, as common parsers do.

Limits: an entity at ``max_depth`` (the message itself is depth 0) that would need its children
parsed, a container that cannot get a single child within ``max_parts``, and a message/rfc822
part whose body is transfer-encoded (RFC 2046 §5.2.1 allows only 7bit, 8bit and binary, and we
cannot give offsets into decoded data) become *opaque*: an application/octet-stream leaf whose
octets stay reachable by section number. A multipart that reaches ``max_parts`` after some
children keeps them and treats the rest of its body like an epilogue. ``max_depth`` is capped
at :data:`DEPTH_CEILING` so that the recursive parser and renderers stay far from Python's
recursion limit. Nothing here raises on any input.
"""

from __future__ import annotations

from mailpost.mime.delimiters import Delimiter, DelimiterFinder
from mailpost.mime.headers import field_pattern, find_header_end, first_values, text
from mailpost.mime.params import parse_content_type, parse_disposition, parse_language, parse_token
from mailpost.mime.part import MESSAGE_SUBTYPES, Part, RawEnvelope

DEPTH_CEILING = 200
# Boundaries longer than this are cut (RFC 2046 allows 70); prefix matching still works.
MAX_BOUNDARY = 2048

_CONTENT_FIELDS = (b"content-type", b"content-transfer-encoding", b"content-id",
                   b"content-description", b"content-disposition", b"content-language",
                   b"content-location", b"content-md5")
_ENVELOPE_FIELDS = (b"date", b"subject", b"from", b"sender", b"reply-to", b"to", b"cc", b"bcc",
                    b"in-reply-to", b"message-id")
_MIME_HEADER = field_pattern(_CONTENT_FIELDS)
_MESSAGE_HEADER = field_pattern(_CONTENT_FIELDS + _ENVELOPE_FIELDS)
# Transfer encodings under which an encapsulated message's octets are the message itself.
_IDENTITY_ENCODINGS = frozenset({None, "7bit", "8bit", "binary"})

TEXT_PLAIN = ("text", "plain")
MESSAGE_RFC822 = ("message", "rfc822")


def parse_message(data: bytes, max_depth: int = 100, max_parts: int = 10000) -> Part:
    """Parse ``data`` (a whole RFC 5322 message) into its MIME part tree. Never raises.

    The root covers all of ``data``. See the module docstring for the rules and the limits.
    """
    parser = _Parser(data, max(0, min(max_depth, DEPTH_CEILING)), max(1, max_parts))
    root, _ = parser.entity(0, 0, TEXT_PLAIN, (), message_header=True)
    return root


class _Parser:
    """One parse: the data, the limits, the part count and the delimiter finder."""

    def __init__(self, data: bytes, max_depth: int, max_parts: int) -> None:
        self.data = data
        self.max_depth = max_depth
        self.max_parts = max_parts
        self.count = 0
        self.delimiters = DelimiterFinder(data)

    # --- entities --------------------------------------------------------------------------

    def entity(self, start: int, depth: int, default: tuple[str, str],
               stack: tuple[bytes, ...], *, message_header: bool) -> tuple[Part, Delimiter | None]:
        """Parse the entity at ``start``; return it and the delimiter that ended it (or None)."""
        self.count += 1
        term = self.find_delimiter(start, stack)
        part, has_body = self._header(start, term, default, message_header)
        if part.is_multipart and has_body:
            if self._may_descend(depth):
                return self._multipart(part, depth, stack)
            self._make_opaque(part)
            if _break_belongs_to(term, part):
                _drop_body(part)
        elif part.media_type == "message" and part.subtype in MESSAGE_SUBTYPES:
            if part.encoding in _IDENTITY_ENCODINGS and self._may_descend(depth):
                return self._message(part, depth, stack, term, has_body)
            self._make_opaque(part)
        self._finish(part, term, part.body_start)
        return part, term

    def _header(self, start: int, term: Delimiter | None, default: tuple[str, str],
                message_header: bool) -> tuple[Part, bool]:
        """The entity's header as a Part with its fields, and whether a body follows it.

        The header ends at the first empty line before ``term`` (the first enclosing delimiter);
        without one, everything up to ``term`` is header and there is no body.
        """
        data = self.data
        limit = len(data) if term is None else term.line_start
        found = find_header_end(data, start, limit)
        if found is None:
            header_end = body_start = len(data) if term is None else term.content_end
        else:
            header_end, body_start = found
        part = Part(start, header_end, body_start, body_start)
        pattern = _MESSAGE_HEADER if message_header else _MIME_HEADER
        fields = first_values(data, start, header_end, pattern)
        _apply_fields(part, fields, default)
        if message_header:
            part.envelope = _raw_envelope(fields)
        if found is not None and not part.is_multipart and _break_belongs_to(term, part):
            # The empty line is the line break before the delimiter, which belongs to the
            # delimiter (RFC 2046 §5.1.1): no body. A multipart keeps it, because whether the
            # next line is its own delimiter or an enclosing one is decided once its boundary
            # is known (longest match), as Dovecot does.
            _drop_body(part)
            return part, False
        return part, found is not None

    def _multipart(self, part: Part, depth: int,
                   stack: tuple[bytes, ...]) -> tuple[Part, Delimiter | None]:
        boundary = _boundary(part)
        if boundary is None:  # a multipart without boundary has no children (and no syntax)
            term = self.find_delimiter(part.body_start, stack)
            self._finish(part, term, part.body_start)
            return part, term
        inner = stack + (boundary,)
        own = len(stack)
        child_default = MESSAGE_RFC822 if part.subtype == "digest" else TEXT_PLAIN
        found = self.find_delimiter(part.body_start, inner)
        while (found is not None and found.level == own and not found.close
               and self.count < self.max_parts):
            child, found = self.entity(found.next_pos, depth + 1, child_default, inner,
                                       message_header=False)
            part.children.append(child)
        if found is not None and found.level == own:
            # Close delimiter (or out of parts): the rest up to an enclosing delimiter is epilogue.
            found = self.find_delimiter(found.next_pos, stack)
        self._finish(part, found, part.body_start)
        return part, found

    def _message(self, part: Part, depth: int, stack: tuple[bytes, ...],
                 term: Delimiter | None, has_body: bool) -> tuple[Part, Delimiter | None]:
        """A message/rfc822 or message/global part: its body is the encapsulated message,
        which is empty (but present, as the BODYSTRUCTURE grammar requires) if it has no body."""
        if has_body:
            child, term = self.entity(part.body_start, depth + 1, TEXT_PLAIN, stack,
                                      message_header=True)
        else:
            self.count += 1
            position = part.body_start
            child = Part(position, position, position, position, envelope=RawEnvelope())
        part.children.append(child)
        part.end = child.end
        part.lines = self.data.count(b"\n", part.body_start, part.end)
        return part, term

    def _may_descend(self, depth: int) -> bool:
        return depth < self.max_depth and self.count < self.max_parts

    @staticmethod
    def _make_opaque(part: Part) -> None:
        part.media_type, part.subtype, part.opaque = "application", "octet-stream", True

    def _finish(self, part: Part, term: Delimiter | None, floor: int) -> None:
        """End ``part`` where ``term`` starts (or at the end of data) and count its lines."""
        part.end = len(self.data) if term is None else max(floor, term.content_end)
        part.lines = self.data.count(b"\n", part.body_start, part.end)

    def find_delimiter(self, pos: int, stack: tuple[bytes, ...]) -> Delimiter | None:
        """The first delimiter line of any boundary in ``stack`` at or after line start ``pos``."""
        return self.delimiters.find(pos, stack) if stack else None


def _break_belongs_to(term: Delimiter | None, part: Part) -> bool:
    """Whether the empty line ending ``part``'s header is the line break before ``term``."""
    return term is not None and part.body_start > term.content_end


def _drop_body(part: Part) -> None:
    part.body_start = part.end = part.header_end


def _boundary(part: Part) -> bytes | None:
    value = part.param("boundary")
    if value is None:
        return None
    octets = value.encode("utf-8", "surrogateescape")[:MAX_BOUNDARY].rstrip(b" \t")
    return octets or None


def _apply_fields(part: Part, fields: dict[bytes, bytes], default: tuple[str, str]) -> None:
    """Fill ``part``'s MIME fields from its header values (RFC 2045 §5-§8, RFC 2183, RFC 3282)."""
    media = None
    raw_type = fields.get(b"content-type")
    if raw_type is not None:
        media = parse_content_type(raw_type)
    if media is None:
        part.media_type, part.subtype = default
    else:
        part.media_type, part.subtype, part.params = media
    raw_encoding = fields.get(b"content-transfer-encoding")
    if raw_encoding is not None:
        part.encoding = parse_token(raw_encoding)
    raw_disposition = fields.get(b"content-disposition")
    if raw_disposition is not None:
        disposition = parse_disposition(raw_disposition)
        if disposition is not None:
            part.disposition, part.disposition_params = disposition
    raw_language = fields.get(b"content-language")
    if raw_language is not None:
        part.language = parse_language(raw_language)
    part.content_id = _optional_text(fields.get(b"content-id"))
    part.description = _optional_text(fields.get(b"content-description"))
    part.location = _optional_text(fields.get(b"content-location"))
    part.md5 = _optional_text(fields.get(b"content-md5"))


def _optional_text(raw: bytes | None) -> str | None:
    return None if raw is None else text(raw)


def _raw_envelope(fields: dict[bytes, bytes]) -> RawEnvelope:
    def get(name: bytes) -> str | None:
        return _optional_text(fields.get(name))

    return RawEnvelope(date=get(b"date"), subject=get(b"subject"), from_=get(b"from"),
                       sender=get(b"sender"), reply_to=get(b"reply-to"), to=get(b"to"),
                       cc=get(b"cc"), bcc=get(b"bcc"), in_reply_to=get(b"in-reply-to"),
                       message_id=get(b"message-id"))
