"""The IMAP ENVELOPE of a message (RFC 9051 §7.5.2, formal syntax ``envelope`` in §9).

Theory of operation
-------------------
The parser stored, for every message header (the root and each encapsulated message), the ten
fields ENVELOPE is made of, unfolded and trimmed but not decoded (:class:`RawEnvelope`). This
module renders them in the order RFC 9051 §7.5.2 fixes: date, subject, from, sender, reply-to,
to, cc, bcc, in-reply-to, message-id.

* Strings are the header text as written, unfolded. RFC 9051 never asks for RFC 2047 decoding
  in ENVELOPE: ``env-subject`` is a plain ``nstring``, and ``addr-name`` "holds phrase from
  [RFC5322] mailbox after removing [RFC5322] quoting" (§9), quoting, not encoding. Clients
  decode encoded words themselves; a server that decoded them would send 8-bit text where the
  message had none.
* "If the Date, Subject, In-Reply-To, and Message-ID header fields are absent in the [RFC5322]
  header, the corresponding member of the envelope is NIL; if these header fields are present
  but empty, the corresponding member of the envelope is the empty string." (§7.5.2)
* "If the From, To, Cc, and Bcc header fields are absent in the [RFC5322] header, or are
  present but empty, the corresponding member of the envelope is NIL." and "If the Sender or
  Reply-To header fields are absent in the [RFC5322] header, or are present but empty, the
  server sets the corresponding member of the envelope to be the same value as the from
  member" (§7.5.2). A field whose value holds no address at all counts as empty.
* Addresses are ``(name adl mailbox host)`` with no space between them; group syntax is a
  start marker ``(NIL NIL "group name" NIL)`` and an end marker ``(NIL NIL NIL NIL)``
  (:mod:`mailpost.mime.address`).

8-bit header text (RFC 6532) is sent as UTF-8 in a quoted string when ``utf8`` is true, else as
a literal (:mod:`mailpost.mime.imapstring`).
"""

from __future__ import annotations

from mailpost.mime.address import Address, parse_address_list
from mailpost.mime.imapstring import NIL, nstring
from mailpost.mime.part import Part, RawEnvelope


def envelope(part: Part, *, utf8: bool = False) -> bytes:
    """The ENVELOPE of a message header part, parentheses included.

    ``part`` is the root of a tree or an encapsulated message; for a message/rfc822 part the
    envelope of the message inside it is given. A part without a message header renders as an
    envelope of NILs.
    """
    if part.envelope is None and part.is_message:
        part = part.children[0]
    raw = part.envelope or RawEnvelope()
    sender_default = _addresses(raw.from_, utf8)
    fields = [
        nstring(raw.date, utf8=utf8),
        nstring(raw.subject, utf8=utf8),
        sender_default,
        _addresses(raw.sender, utf8, sender_default),
        _addresses(raw.reply_to, utf8, sender_default),
        _addresses(raw.to, utf8),
        _addresses(raw.cc, utf8),
        _addresses(raw.bcc, utf8),
        nstring(raw.in_reply_to, utf8=utf8),
        nstring(raw.message_id, utf8=utf8),
    ]
    return b"(" + b" ".join(fields) + b")"


def _addresses(value: str | None, utf8: bool, default: bytes = NIL) -> bytes:
    """An ``env-from``-style list: ``"(" 1*address ")"``, or ``default`` when there is none."""
    if value is None:
        return default
    found = parse_address_list(value)
    if not found:
        return default
    return b"(" + b"".join(_address(address, utf8) for address in found) + b")"


def _address(address: Address, utf8: bool) -> bytes:
    return b"(%s %s %s %s)" % (nstring(address.name, utf8=utf8),
                               nstring(address.adl, utf8=utf8),
                               nstring(address.mailbox, utf8=utf8),
                               nstring(address.host, utf8=utf8))
