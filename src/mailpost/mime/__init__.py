"""The MIME layer under the IMAP server: part tree, BODYSTRUCTURE, ENVELOPE, sections, BINARY.

Theory of operation
-------------------
A stored message (octets, normally CRLF, possibly malformed) is parsed once into a tree of
:class:`Part` objects holding byte offsets and parsed MIME fields but no message octets. The
tree is cheap to keep: the IMAP layer caches it per message (``pickle`` works, and
:func:`to_json` / :func:`from_json` give a flat, depth-independent JSON form). Everything that
needs octets (sections, BINARY) takes the message ``data`` and the tree.

Public API (all importable from ``mailpost.mime``):

``parse_message(data: bytes, max_depth: int = 100, max_parts: int = 10000) -> Part``
    The MIME tree of a whole message. Never raises. Parts beyond ``max_depth`` nesting or
    ``max_parts`` parts, and message/rfc822 parts with a non-identity transfer encoding, become
    opaque application/octet-stream leaves (``Part.opaque``). See :mod:`.parse`.

``Part``, ``Param``, ``RawEnvelope``
    Plain dataclasses. ``Part``: ``start``, ``header_end``, ``body_start``, ``end`` (offsets:
    ``data[start:body_start]`` is the header with its blank line, ``data[body_start:end]`` the
    body), ``media_type``/``subtype`` (lowercase), ``params``, ``encoding``, ``content_id``,
    ``description``, ``disposition``, ``disposition_params``, ``language``, ``location``,
    ``md5``, ``lines``, ``children``, ``envelope`` (message headers only), ``opaque``; and
    ``size``, ``is_multipart``, ``is_message``, ``is_leaf``, ``param(name)``, ``walk()``.

``body_structure(part, extended=True, *, utf8=False, message_global=True) -> bytes``
    BODYSTRUCTURE (``extended``) or BODY, outer parentheses included. ``utf8``: the client
    accepts UTF-8 in quoted strings (IMAP4rev2 or ``ENABLE UTF8=ACCEPT``); otherwise 8-bit
    text is sent as literals. ``message_global=False`` for IMAP4rev1 clients (RFC 3501 knows
    no MESSAGE/GLOBAL). Returns bytes, not str, because literals count octets.

``envelope(part, *, utf8=False) -> bytes``
    ENVELOPE of a message (the root, an encapsulated message, or a message/rfc822 part).

``section(data, root, spec: SectionSpec | str) -> bytes``
    ``BODY[spec]`` octets (``spec`` as between the brackets: ``""``, ``"1.2"``, ``"1.2.MIME"``,
    ``"HEADER"``, ``"TEXT"``, ``"2.HEADER.FIELDS (From To)"``, ``"HEADER.FIELDS.NOT (X-A)"``).
    A missing part gives ``b""``; a malformed spec raises ``InvalidSection`` (answer BAD).
    Partial ``<start.length>`` is applied by the caller to the result. Also
    ``parse_section(text) -> SectionSpec`` and ``find_part(root, path) -> Part | None`` (for
    BINARY's ``section-part``).

``binary(data, part) -> bytes`` and ``binary_size(data, part) -> int``
    Content with the transfer encoding removed (text line ends made CRLF). Raise
    ``UnknownTransferEncoding`` (answer ``NO [UNKNOWN-CTE]``).

``imapstring``: ``string(value, *, utf8)``, ``nstring(value, *, utf8)``, ``quoted``,
``literal``, ``is_quotable``, ``NIL``: IMAP string rendering (quoted when safe, else literal).

``decode_words(value) -> str``
    RFC 2047 decoding of a header value, for SEARCH-like consumers; never raises.

Decisions worth knowing when serving IMAP:

* Case: type, subtype, encoding, parameter names and disposition type are upper case, as in
  RFC 9051's examples; values as written. Defaults: ``("CHARSET" "US-ASCII")`` for text,
  ``"7BIT"``, NIL for absent fields.
* RFC 2231 values are merged, converted to UTF-8 and sent as ``"NAME*" "utf-8'lang'%XX"``
  (plain ``"NAME" "value"`` when the result is ASCII without language). Raw 8-bit header text
  is a quoted UTF-8 string when ``utf8`` is set, else a literal; never an RFC 2047 word.
* ENVELOPE strings are the header text unfolded, not RFC 2047-decoded (RFC 9051 §9).
* Sizes are octets as stored (no LF to CRLF accounting); ``lines`` counts LF octets.
* Section numbers: a non-multipart message has part 1 (its body); a leaf body part reached
  through a multipart has no sub-parts; a missing part yields ``b""``.
* Limits (``max_depth`` capped at 200, ``max_parts``) make parts opaque, never raise.
"""

from __future__ import annotations

from mailpost.mime.envelope import envelope
from mailpost.mime.headers import decode_words
from mailpost.mime.imapstring import NIL, is_quotable, literal, nstring, quoted, string
from mailpost.mime.parse import parse_message
from mailpost.mime.part import Param, Part, RawEnvelope, from_json, to_json
from mailpost.mime.sections import (
    InvalidSection,
    SectionSpec,
    find_part,
    parse_section,
    section,
)
from mailpost.mime.structure import body_structure
from mailpost.mime.transfer import UnknownTransferEncoding, binary, binary_size

__all__ = [
    "NIL",
    "InvalidSection",
    "Param",
    "Part",
    "RawEnvelope",
    "SectionSpec",
    "UnknownTransferEncoding",
    "binary",
    "binary_size",
    "body_structure",
    "decode_words",
    "envelope",
    "find_part",
    "from_json",
    "is_quotable",
    "literal",
    "nstring",
    "parse_message",
    "parse_section",
    "quoted",
    "section",
    "string",
    "to_json",
]
