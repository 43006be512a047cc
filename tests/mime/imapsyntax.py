"""A strict reader for the IMAP ``body`` and ``envelope`` productions (RFC 9051 §9).

Test helper, written independently of the renderer it checks: it follows the ABNF token by
token, including every SP, the literal lengths and the quoting rules, and returns what it read
so tests can compare it with the parsed tree. Any deviation raises :class:`SyntaxViolation`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_NUMBER = re.compile(rb"[0-9]+")
_LITERAL_HEAD = re.compile(rb"\{([0-9]+)\}\r\n")


class SyntaxViolation(AssertionError):
    pass


@dataclass
class Body:
    """What the reader found in one ``body``."""

    media_type: bytes = b""
    subtype: bytes = b""
    params: list[tuple[bytes, bytes]] | None = None
    size: int = 0
    lines: int | None = None
    envelope: Envelope | None = None
    children: list[Body] = field(default_factory=list)
    extension: list[object] = field(default_factory=list)


@dataclass
class Envelope:
    fields: list[bytes | None]
    addresses: list[list[tuple[bytes | None, ...]] | None]


class Reader:
    def __init__(self, data: bytes, *, utf8: bool = False, extended: bool = True,
                 message_global: bool = True) -> None:
        self.data = data
        self.pos = 0
        self.utf8 = utf8
        self.extended = extended
        self.message_global = message_global

    # --- lexical ---------------------------------------------------------------------------

    def fail(self, what: str) -> SyntaxViolation:
        context = self.data[max(0, self.pos - 40):self.pos + 40]
        return SyntaxViolation(f"{what} at {self.pos}: {context!r}")

    def peek(self, text: bytes) -> bool:
        return self.data.startswith(text, self.pos)

    def expect(self, text: bytes) -> None:
        if not self.peek(text):
            raise self.fail(f"expected {text!r}")
        self.pos += len(text)

    def sp(self) -> None:
        self.expect(b" ")

    def number(self) -> int:
        match = _NUMBER.match(self.data, self.pos)
        if match is None:
            raise self.fail("expected a number")
        self.pos = match.end()
        return int(match.group())

    def string(self) -> bytes:
        if self.peek(b'"'):
            return self._quoted()
        if self.peek(b"{"):
            return self._literal()
        raise self.fail("expected a string")

    def _quoted(self) -> bytes:
        self.pos += 1
        out = bytearray()
        while True:
            if self.pos >= len(self.data):
                raise self.fail("unterminated quoted string")
            char = self.data[self.pos]
            if char == 0x22:
                self.pos += 1
                break
            if char == 0x5C:
                escaped = self.data[self.pos + 1:self.pos + 2]
                if escaped not in (b'"', b"\\"):
                    raise self.fail("backslash before a non-special")
                out += escaped
                self.pos += 2
                continue
            if char in (0, 13, 10):
                raise self.fail("NUL, CR or LF in a quoted string")
            out.append(char)
            self.pos += 1
        if not bytes(out).isascii():
            if not self.utf8:
                raise self.fail("8-bit octets in a quoted string without UTF-8")
            try:
                bytes(out).decode("utf-8")
            except UnicodeDecodeError:
                raise self.fail("malformed UTF-8 in a quoted string") from None
        return bytes(out)

    def _literal(self) -> bytes:
        match = _LITERAL_HEAD.match(self.data, self.pos)
        if match is None:
            raise self.fail("bad literal header")
        length = int(match.group(1))
        start = match.end()
        content = self.data[start:start + length]
        if len(content) != length:
            raise self.fail("literal runs past the end")
        if b"\x00" in content:
            raise self.fail("NUL in a literal")
        self.pos = start + length
        return content

    def nil(self) -> bool:
        if self.peek(b"NIL"):
            self.pos += 3
            return True
        return False

    def nstring(self) -> bytes | None:
        return None if self.nil() else self.string()

    # --- body ------------------------------------------------------------------------------

    def body(self) -> Body:
        self.expect(b"(")
        result = self._mpart() if self.peek(b"(") else self._single()
        self.expect(b")")
        return result

    def _mpart(self) -> Body:
        result = Body(media_type=b"MULTIPART")
        while self.peek(b"("):
            result.children.append(self.body())
        self.sp()
        result.subtype = self.string()
        if self.extended:
            self.sp()
            result.params = self.params()
            self._common_extension(result)
        return result

    def _single(self) -> Body:
        result = Body()
        result.media_type = self.string()
        self.sp()
        result.subtype = self.string()
        self.sp()
        result.params = self.params()
        self.sp()
        result.extension.append(self.nstring())  # id
        self.sp()
        result.extension.append(self.nstring())  # description
        self.sp()
        result.extension.append(self.string())  # encoding
        self.sp()
        result.size = self.number()
        kind = (result.media_type.upper(), result.subtype.upper())
        message_types = {b"RFC822", b"GLOBAL"} if self.message_global else {b"RFC822"}
        if kind[0] == b"MESSAGE" and kind[1] in message_types:
            self.sp()
            result.envelope = self.envelope()
            self.sp()
            result.children.append(self.body())
            self.sp()
            result.lines = self.number()
        elif kind[0] == b"TEXT":
            self.sp()
            result.lines = self.number()
        if self.extended:
            self.sp()
            result.extension.append(self.nstring())  # md5
            self._common_extension(result)
        return result

    def _common_extension(self, result: Body) -> None:
        self.sp()
        result.extension.append(self.disposition())
        self.sp()
        result.extension.append(self.language())
        self.sp()
        result.extension.append(self.nstring())  # location

    def params(self) -> list[tuple[bytes, bytes]] | None:
        if self.nil():
            return None
        self.expect(b"(")
        pairs = []
        while True:
            name = self.string()
            self.sp()
            pairs.append((name, self.string()))
            if self.peek(b")"):
                break
            self.sp()
        self.expect(b")")
        return pairs

    def disposition(self) -> tuple[bytes, list[tuple[bytes, bytes]] | None] | None:
        if self.nil():
            return None
        self.expect(b"(")
        kind = self.string()
        self.sp()
        params = self.params()
        self.expect(b")")
        return kind, params

    def language(self) -> list[bytes] | bytes | None:
        if self.nil():
            return None
        if not self.peek(b"("):
            return self.string()
        self.expect(b"(")
        tags = [self.string()]
        while self.peek(b" "):
            self.sp()
            tags.append(self.string())
        self.expect(b")")
        return tags

    # --- envelope --------------------------------------------------------------------------

    def envelope(self) -> Envelope:
        self.expect(b"(")
        fields: list[bytes | None] = [self.nstring()]
        self.sp()
        fields.append(self.nstring())
        addresses = []
        for _ in range(6):
            self.sp()
            addresses.append(self.address_list())
        self.sp()
        fields.append(self.nstring())
        self.sp()
        fields.append(self.nstring())
        self.expect(b")")
        return Envelope(fields, addresses)

    def address_list(self) -> list[tuple[bytes | None, ...]] | None:
        if self.nil():
            return None
        self.expect(b"(")
        found = []
        while self.peek(b"("):
            self.expect(b"(")
            items = [self.nstring()]
            for _ in range(3):
                self.sp()
                items.append(self.nstring())
            self.expect(b")")
            found.append(tuple(items))
        self.expect(b")")
        if not found:
            raise self.fail("empty address list (must be NIL)")
        _check_groups(found, self)
        return found

    def done(self) -> None:
        if self.pos != len(self.data):
            raise self.fail("trailing data")


def _check_groups(addresses: list[tuple[bytes | None, ...]], reader: Reader) -> None:
    """Group start markers (host NIL, mailbox set) and end markers (all NIL) must pair up."""
    open_group = False
    for name, adl, mailbox, host in addresses:
        if host is not None:
            continue
        if mailbox is not None:
            if open_group or name is not None or adl is not None:
                raise reader.fail("bad group start marker")
            open_group = True
        else:
            if not open_group or name is not None or adl is not None:
                raise reader.fail("bad group end marker")
            open_group = False
    if open_group:
        raise reader.fail("unterminated group")


def read_body(data: bytes, **options: bool) -> Body:
    reader = Reader(data, **options)
    body = reader.body()
    reader.done()
    return body


def read_envelope(data: bytes, *, utf8: bool = False) -> Envelope:
    reader = Reader(data, utf8=utf8)
    result = reader.envelope()
    reader.done()
    return result
