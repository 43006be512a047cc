"""The MIME part tree: plain dataclasses with byte offsets, and their serialised forms.

Theory of operation
-------------------
A :class:`Part` never holds message octets, only offsets into the message it was parsed from,
so a parsed tree is small, picklable and cacheable next to the message (the IMAP layer caches
it per message). Every part covers ``data[start:end]`` and splits it in two::

    start            header_end          body_start                  end
      | header fields  | blank line (if any) | body                      |

``data[start:body_start]`` is the header *including* its terminating blank line, so header and
body concatenate to the whole part (RFC 9051 §6.4.5.1: the blank line belongs to every header
fetch). When a header has no blank line, ``header_end == body_start``.

Children: a multipart has one child per body part; a ``message/rfc822`` or ``message/global``
part has exactly one child, the encapsulated message, whose header is an RFC 5322 header and
which spans the same octets as its parent's body. Only such message headers (the root and the
encapsulated messages) carry a :class:`RawEnvelope`.

Header-derived text is ``str`` decoded from UTF-8 with ``surrogateescape``, so octets that are
not UTF-8 survive as lone surrogates and :func:`mailpost.mime.imapstring.to_octets` gets the
original octets back. Names and types (media type, subtype, parameter names, disposition type,
transfer encoding) are lowercased here; rendering decides on case.

Serialisation: ``pickle`` works on the dataclasses as they are; :func:`to_json` /
:func:`from_json` store the tree as a flat pre-order list of rows, so neither encoding nor
decoding recurses, whatever the depth.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

# Media types whose single child is an encapsulated message (RFC 9051 §6.4.5.1).
MESSAGE_SUBTYPES = frozenset({"rfc822", "global"})


@dataclass(slots=True)
class Param:
    """One Content-Type or Content-Disposition parameter, RFC 2231 continuations merged.

    ``charset`` is None for an ordinary value. For an RFC 2231 extended value (``name*=``) it is
    the label of ``value``'s octets once encoded as UTF-8 with surrogateescape: ``"utf-8"`` when
    the original charset was known and the value was decoded, otherwise the original label with
    the undecoded octets carried as surrogates.
    """

    name: str
    value: str
    charset: str | None = None
    language: str = ""


@dataclass(slots=True)
class RawEnvelope:
    """The ten RFC 5322 fields ENVELOPE is made of, unfolded but otherwise as written.

    None means the field is absent; the address fields are parsed when rendered.
    """

    date: str | None = None
    subject: str | None = None
    from_: str | None = None
    sender: str | None = None
    reply_to: str | None = None
    to: str | None = None
    cc: str | None = None
    bcc: str | None = None
    in_reply_to: str | None = None
    message_id: str | None = None

    def as_tuple(self) -> tuple[str | None, ...]:
        return (self.date, self.subject, self.from_, self.sender, self.reply_to, self.to,
                self.cc, self.bcc, self.in_reply_to, self.message_id)


@dataclass(slots=True)
class Part:
    """One MIME entity: offsets into the message plus its parsed MIME header fields."""

    start: int
    header_end: int
    body_start: int
    end: int
    media_type: str = "text"
    subtype: str = "plain"
    params: list[Param] = field(default_factory=list)
    encoding: str | None = None
    content_id: str | None = None
    description: str | None = None
    disposition: str | None = None
    disposition_params: list[Param] = field(default_factory=list)
    language: list[str] | None = None
    location: str | None = None
    md5: str | None = None
    lines: int = 0
    children: list[Part] = field(default_factory=list)
    envelope: RawEnvelope | None = None
    # True when a limit (depth, part count) or an encoded message body stopped the parser from
    # looking inside: the part is then an application/octet-stream leaf.
    opaque: bool = False

    @property
    def size(self) -> int:
        """Body size in octets, in its transfer encoding (BODYSTRUCTURE ``body-fld-octets``)."""
        return self.end - self.body_start

    @property
    def is_multipart(self) -> bool:
        return self.media_type == "multipart"

    @property
    def is_message(self) -> bool:
        """A message/rfc822 or message/global part with its encapsulated message as child."""
        return (self.media_type == "message" and self.subtype in MESSAGE_SUBTYPES
                and len(self.children) == 1)

    @property
    def is_leaf(self) -> bool:
        """A part BINARY may be asked for: neither multipart nor an encapsulated message."""
        return not self.is_multipart and not self.is_message

    def param(self, name: str) -> str | None:
        """The first Content-Type parameter called ``name`` (case-insensitive), if any."""
        return _find_param(self.params, name)

    def disposition_param(self, name: str) -> str | None:
        return _find_param(self.disposition_params, name)

    def walk(self) -> Iterator[Part]:
        """This part and all its descendants in pre-order, without recursion."""
        stack = [self]
        while stack:
            part = stack.pop()
            yield part
            stack.extend(reversed(part.children))


def _find_param(params: list[Param], name: str) -> str | None:
    wanted = name.lower()
    for param in params:
        if param.name == wanted:
            return param.value
    return None


# --- flat row form -----------------------------------------------------------------------------

def _params_row(params: list[Param]) -> list[list[Any]]:
    return [[p.name, p.value, p.charset, p.language] for p in params]


def _params_from(rows: list[list[Any]]) -> list[Param]:
    return [Param(str(r[0]), str(r[1]), r[2], str(r[3])) for r in rows]


def _row(part: Part) -> list[Any]:
    env = None if part.envelope is None else list(part.envelope.as_tuple())
    return [part.start, part.header_end, part.body_start, part.end, part.media_type,
            part.subtype, _params_row(part.params), part.encoding, part.content_id,
            part.description, part.disposition, _params_row(part.disposition_params),
            part.language, part.location, part.md5, part.lines, part.opaque, env,
            len(part.children)]


def _from_row(row: list[Any]) -> Part:
    env = None if row[17] is None else RawEnvelope(*row[17])
    return Part(start=row[0], header_end=row[1], body_start=row[2], end=row[3],
                media_type=row[4], subtype=row[5], params=_params_from(row[6]),
                encoding=row[7], content_id=row[8], description=row[9], disposition=row[10],
                disposition_params=_params_from(row[11]), language=row[12], location=row[13],
                md5=row[14], lines=row[15], opaque=row[16], envelope=env)


def to_rows(root: Part) -> list[list[Any]]:
    """The tree as a flat pre-order list of rows; each row ends with its child count."""
    return [_row(part) for part in root.walk()]


def from_rows(rows: list[list[Any]]) -> Part:
    """Rebuild the tree :func:`to_rows` flattened (iteratively: no recursion limit)."""
    root = _from_row(rows[0])
    pending: list[tuple[Part, int]] = [(root, rows[0][18])]
    for row in rows[1:]:
        while pending[-1][1] == 0:
            pending.pop()
        parent, left = pending[-1]
        pending[-1] = (parent, left - 1)
        part = _from_row(row)
        parent.children.append(part)
        pending.append((part, row[18]))
    return root


def to_json(root: Part) -> str:
    """JSON text for a tree; lone surrogates are escaped (``ensure_ascii``) and survive."""
    return json.dumps(to_rows(root), ensure_ascii=True, separators=(",", ":"))


def from_json(text: str) -> Part:
    rows: list[list[Any]] = json.loads(text)
    return from_rows(rows)
