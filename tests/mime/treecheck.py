"""Invariants every parsed tree must satisfy, shared by the corpus, golden and property tests."""

from __future__ import annotations

import pickle

from mailpost.mime import (
    Part,
    UnknownTransferEncoding,
    binary,
    binary_size,
    body_structure,
    envelope,
    find_part,
    from_json,
    section,
    to_json,
)
from tests.mime.imapsyntax import Body, read_body, read_envelope


def addressable(root: Part) -> list[tuple[tuple[int, ...], Part]]:
    """Every part with the section number RFC 9051 §6.4.5.1 gives it, computed independently
    of the code under test: a non-multipart entity is its own part 1, the parts of a message
    part are those of the message inside it."""
    found: list[tuple[tuple[int, ...], Part]] = []

    def visit(parts: list[Part], prefix: tuple[int, ...]) -> None:
        for number, part in enumerate(parts, 1):
            path = prefix + (number,)
            found.append((path, part))
            if part.is_multipart:
                visit(part.children, path)
            elif part.is_message:
                inner = part.children[0]
                visit(inner.children if inner.is_multipart else [inner], path)

    visit(root.children if root.is_multipart else [root], ())
    return found


def check_offsets(data: bytes, root: Part) -> None:
    assert (root.start, root.end) == (0, len(data))
    for part in root.walk():
        assert part.start <= part.header_end <= part.body_start <= part.end <= len(data)
        assert part.lines == data.count(b"\n", part.body_start, part.end)
        position = part.body_start
        for child in part.children:
            assert position <= child.start and child.end <= part.end
            position = child.end
        if part.is_message:
            (child,) = part.children
            assert (child.start, child.end) == (part.body_start, part.end)
        if part.header_end < part.body_start:
            assert data[part.header_end:part.body_start] in (b"\r\n", b"\n")


def check_rendering(root: Part) -> None:
    """BODY, BODYSTRUCTURE and ENVELOPE parse under the grammar and agree with the tree."""
    for utf8 in (False, True):
        for extended in (False, True):
            rendered = body_structure(root, extended, utf8=utf8)
            _compare(read_body(rendered, utf8=utf8, extended=extended), root)
        read_envelope(envelope(root, utf8=utf8), utf8=utf8)
    read_body(body_structure(root, message_global=False), message_global=False)


def _compare(body: Body, part: Part) -> None:
    if part.is_multipart:
        assert body.media_type == b"MULTIPART"
        assert len(body.children) == max(1, len(part.children))
        for child_body, child in zip(body.children, part.children, strict=False):
            _compare(child_body, child)
        return
    assert body.media_type.lower() == part.media_type.encode()
    assert body.size == part.size
    if part.media_type == "text" or part.is_message:
        assert body.lines == part.lines
    if part.is_message:
        _compare(body.children[0], part.children[0])


def check_sections(data: bytes, root: Part) -> None:
    """Section extraction is consistent with the offsets (RFC 9051 §6.4.5.1)."""
    assert section(data, root, "") == data
    assert section(data, root, "HEADER") + section(data, root, "TEXT") == data
    for path, part in addressable(root):
        number = ".".join(map(str, path))
        assert find_part(root, path) is part
        body = section(data, root, number)
        assert body == data[part.body_start:part.end]
        assert section(data, root, number + ".MIME") + body == data[part.start:part.end]
        if part.is_message:
            inner = part.children[0]
            header = section(data, root, number + ".HEADER")
            assert header + section(data, root, number + ".TEXT") == body
            fields = section(data, root, number + ".HEADER.FIELDS (Subject From)")
            others = section(data, root, number + ".HEADER.FIELDS.NOT (Subject From)")
            blank = data[inner.header_end:inner.body_start]
            assert len(fields) + len(others) == len(header) + len(blank)
        else:
            assert section(data, root, number + ".HEADER") == b""
    beyond = (len(root.children) + 1 if root.is_multipart else 2,)
    assert section(data, root, ".".join(map(str, beyond))) == b""


def check_binary(data: bytes, root: Part) -> None:
    for part in root.walk():
        try:
            decoded = binary(data, part)
        except UnknownTransferEncoding:
            continue
        assert binary_size(data, part) == len(decoded)


def check_serialisation(root: Part) -> None:
    assert from_json(to_json(root)) == root
    assert pickle.loads(pickle.dumps(root)) == root


def check_everything(data: bytes, root: Part) -> None:
    check_offsets(data, root)
    check_rendering(root)
    check_sections(data, root)
    check_binary(data, root)
    check_serialisation(root)
