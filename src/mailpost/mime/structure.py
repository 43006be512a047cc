"""BODY and BODYSTRUCTURE (RFC 9051 §7.5.2, formal syntax ``body`` in §9).

Theory of operation
-------------------
:func:`body_structure` renders a parsed tree as the ``body`` production, outer parentheses
included. The field order is the grammar's:

* single part: ``type subtype params id description encoding size``, then ``lines`` for text,
  or ``envelope body lines`` for message/rfc822 (and message/global), then, for BODYSTRUCTURE
  only, the extension data ``md5 disposition language location``;
* multipart: the children with no space between them, ``SP subtype``, then for BODYSTRUCTURE
  ``params disposition language location``.

Case: type, subtype, transfer encoding, parameter names and the disposition type are sent in
upper case, as every example in RFC 9051 does (``("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL
"7BIT" 2279 48)``, also UW-IMAP's and Cyrus' practice); these are case-insensitive tokens
(RFC 2045 §5.1), so clients compare them without case. Parameter values and the other strings
are sent as written. (Dovecot sends names as written in the message instead; only case
differs.)

Defaults (RFC 2045 §5.2, §6.1): a text part without a charset parameter gets ``("CHARSET"
"US-ASCII")`` appended; a missing transfer encoding is ``"7BIT"``; absent optional fields are NIL;
a parameter list without parameters is NIL. A multipart without any body part (no delimiter,
no boundary parameter) is given the zero-length text/plain child Dovecot uses, since the grammar
requires ``1*body``; that child is also what section ``N.1`` of it returns: nothing.

RFC 2231 parameters (RFC 9051 §7.5.2: "decode them per [RFC2231], convert to UTF-8,
concatenate, and return the resulting value as a parameter "foo*""): continuations are merged,
the value is converted to UTF-8 and sent as ``"NAME*" "utf-8'lang'%XX..."``, RFC 2231's own
syntax for a ``name*`` value, which is ASCII and so safe in any session and readable by any
RFC 2231 client (Dovecot sends the same form). A value whose charset Python does not know keeps
its octets and label. A value that decodes to plain ASCII with no language is sent as an
ordinary ``"NAME" "value"`` pair: there is nothing for the ``*`` form to convey, and clients
look for ``CHARSET``, not ``CHARSET*``. Ordinary parameter values with 8-bit octets (RFC 6532
messages) are sent as UTF-8 quoted strings when ``utf8`` is allowed, else as literals, never as
RFC 2047 words (RFC 2047 §5: an encoded-word "MUST NOT be used in parameter of a MIME
Content-Type or Content-Disposition field").

``message_global``: IMAP4rev1's grammar (RFC 3501 §9) knows only MESSAGE/RFC822 as a message
type, so for IMAP4rev1 sessions pass False and message/global is rendered as a basic part; its
encapsulated message is still reachable by section number.
"""

from __future__ import annotations

from urllib.parse import quote_from_bytes

from mailpost.mime.envelope import envelope
from mailpost.mime.imapstring import NIL, nstring, string, to_octets
from mailpost.mime.part import Param, Part

# RFC 2231 §7: attribute-char excludes "*", "'", "%" and tspecials; the rest is percent-encoded.
_RFC2231_SAFE = "!#$&+-.^_`|~"
_EMPTY_CHILD = b'("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 0 0'


def body_structure(part: Part, extended: bool = True, *, utf8: bool = False,
                   message_global: bool = True) -> bytes:
    """BODYSTRUCTURE (``extended``) or BODY (not ``extended``) of ``part``, as ``bytes``.

    ``utf8``: the client accepts UTF-8 in quoted strings (IMAP4rev2, or UTF8=ACCEPT enabled).
    ``message_global``: render message/global like message/rfc822 (IMAP4rev2).
    """
    out: list[bytes] = []
    _Renderer(extended, utf8, message_global, out).body(part)
    return b"".join(out)


class _Renderer:
    """Appends the rendering of one tree to ``out``; options fixed for the whole tree."""

    def __init__(self, extended: bool, utf8: bool, message_global: bool,
                 out: list[bytes]) -> None:
        self.extended = extended
        self.utf8 = utf8
        self.message_global = message_global
        self.out = out

    def body(self, part: Part) -> None:
        self.out.append(b"(")
        if part.is_multipart:
            self._multipart(part)
        else:
            self._single(part)
        self.out.append(b")")

    def _multipart(self, part: Part) -> None:
        if part.children:
            for child in part.children:
                self.body(child)
        else:
            self.out.append(_EMPTY_CHILD + (b" NIL NIL NIL NIL)" if self.extended else b")"))
        self.out.append(b" " + _upper(part.subtype))
        if self.extended:
            self.out.append(b" " + self._params(part.params, default_charset=False))
            self._common_extension(part)

    def _single(self, part: Part) -> None:
        out = self.out
        out.append(b"%s %s %s %s %s %s %d" % (
            _upper(part.media_type), _upper(part.subtype),
            self._params(part.params, default_charset=part.media_type == "text"),
            nstring(part.content_id, utf8=self.utf8),
            nstring(part.description, utf8=self.utf8),
            _upper(part.encoding or "7bit"), part.size))
        if part.is_message and (part.subtype == "rfc822" or self.message_global):
            out.append(b" " + envelope(part.children[0], utf8=self.utf8) + b" ")
            self.body(part.children[0])
            out.append(b" %d" % part.lines)
        elif part.media_type == "text":
            out.append(b" %d" % part.lines)
        if self.extended:
            out.append(b" " + nstring(part.md5, utf8=self.utf8))
            self._common_extension(part)

    def _common_extension(self, part: Part) -> None:
        """``disposition language location``, shared by both kinds of extension data."""
        if part.disposition is None:
            disposition = NIL
        else:
            disposition = b"(%s %s)" % (_upper(part.disposition),
                                        self._params(part.disposition_params, False))
        if part.language is None:
            language = NIL
        else:
            language = b"(" + b" ".join(string(tag, utf8=self.utf8)
                                        for tag in part.language) + b")"
        self.out.append(b" %s %s %s" % (disposition, language,
                                        nstring(part.location, utf8=self.utf8)))

    def _params(self, params: list[Param], default_charset: bool) -> bytes:
        """``body-fld-param``: NIL, or the attribute/value pairs."""
        rendered = [self._param(param) for param in params]
        if default_charset and not any(param.name == "charset" for param in params):
            rendered.append(b'"CHARSET" "US-ASCII"')
        if not rendered:
            return NIL
        return b"(" + b" ".join(rendered) + b")"

    def _param(self, param: Param) -> bytes:
        if param.charset is None or _plain_ascii(param):
            return b"%s %s" % (_upper(param.name), string(param.value, utf8=self.utf8))
        encoded = quote_from_bytes(to_octets(param.value), safe=_RFC2231_SAFE)
        value = f"{param.charset}'{param.language}'{encoded}"
        return b"%s %s" % (_upper(param.name + "*"), string(value, utf8=self.utf8))


def _plain_ascii(param: Param) -> bool:
    """An RFC 2231 value that decoded to plain ASCII without a language: the ``*`` form would
    tell the client nothing, and ``"CHARSET" "us-ascii"`` is what clients look for."""
    return param.charset == "utf-8" and not param.language and param.value.isascii()


def _upper(token: str) -> bytes:
    """A case-insensitive token in upper case, as a string (ASCII letters only are changed)."""
    octets = to_octets(token)
    return string(octets.upper())
