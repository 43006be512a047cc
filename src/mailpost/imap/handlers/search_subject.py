"""Base subject extraction for SORT and THREAD (RFC 5256 §2.1) and the collation key.

Theory of operation
-------------------
RFC 5256 §2.1 defines the "base subject" by a procedure over ABNF rules (§5) that is
ambiguous as a grammar, so every server must follow the steps exactly:

1. decode RFC 2047 words, turn tabs and line breaks into spaces, collapse runs of spaces;
2. strip trailing ``subj-trailer`` (``(fwd)`` or white space) until none is left;
3. strip leading ``subj-leader`` (``*subj-blob subj-refwd``, e.g. ``[list] Re:``, or white
   space);
4. strip one leading ``subj-blob`` (``[...]``) if what is left still has a non-blank
   ``subj-base``;
5. repeat 3 and 4 until nothing changes;
6. if the text is ``[fwd: ... ]``, unwrap it and go back to step 2.

The literal tokens (``re``, ``fw``, ``fwd``, ``[fwd:``, ``(fwd)``) are case-insensitive, as
all quoted ABNF strings are. Each step is an anchored regular expression over the current
start/end positions, so no intermediate strings are built. A message "is a reply or forward"
(used by THREAD=REFERENCES, RFC 5256 §4) when step 2 removed ``(fwd)``, step 3 removed a
``subj-refwd`` or step 6 unwrapped ``[fwd:]``.

Bounds: the decoded subject is cut at :data:`MAX_SUBJECT` characters first. Steps 3-5 rescan
the leading blobs once per removed blob, which is quadratic in the worst case; the cut keeps a
hostile ``[a][a][a]...`` subject to a few million regex steps.

:func:`collation_key` implements the comparison RFC 5256 §7 asks for (``i;unicode-casemap``,
RFC 5051): case folded, then compatibility-decomposed, so equal keys mean "same subject".
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from mailpost.mime import decode_words

MAX_SUBJECT = 2048

_SPACES = re.compile(r"[ \t\r\n]+")
_BLOB = r"\[[^\[\]]*\][ \t]*"
# subj-leader = (*subj-blob subj-refwd) / WSP; group "refwd" tells which alternative matched.
_LEADER = re.compile(rf"(?P<refwd>(?:{_BLOB})*(?:re|fwd?)[ \t]*(?:{_BLOB})?:)|[ \t]",
                     re.IGNORECASE)
_LEADING_BLOB = re.compile(_BLOB)
_NONBLANK = re.compile(r"[^ \t]")
_FWD_TRAILER = "(fwd)"
_FWD_HEADER = "[fwd:"


@dataclass(frozen=True, slots=True)
class BaseSubject:
    """The extracted base subject and whether the original marked a reply or forward."""

    text: str
    is_reply_or_forward: bool


def base_subject(raw: str | bytes | None) -> BaseSubject:
    """RFC 5256 §2.1 applied to a Subject: header value (``None`` when absent)."""
    if raw is None:
        return BaseSubject("", False)
    text = _SPACES.sub(" ", decode_words(raw))[:MAX_SUBJECT]
    start, end, marked = 0, len(text), False
    while True:
        end, trailer_marked = _strip_trailers(text, start, end)
        start, leader_marked = _strip_leaders_and_blobs(text, start, end)
        marked = marked or trailer_marked or leader_marked
        if _is_fwd_wrapped(text, start, end):
            start, end, marked = start + len(_FWD_HEADER), end - 1, True
            continue
        return BaseSubject(text[start:end], marked)


def _strip_trailers(text: str, start: int, end: int) -> tuple[int, bool]:
    """Step 2: remove trailing ``(fwd)`` and white space, repeatedly."""
    marked = False
    while end > start:
        if text[end - 1] in " \t":
            end -= 1
        elif end - start >= len(_FWD_TRAILER) and \
                text[end - len(_FWD_TRAILER):end].lower() == _FWD_TRAILER:
            end -= len(_FWD_TRAILER)
            marked = True
        else:
            break
    return end, marked


def _strip_leaders_and_blobs(text: str, start: int, end: int) -> tuple[int, bool]:
    """Steps 3 to 5: leaders, then one blob if a subject remains after it, until stable."""
    marked = False
    while True:
        before = start
        while (match := _LEADER.match(text, start, end)) is not None:
            marked = marked or match.group("refwd") is not None
            start = match.end()
        blob = _LEADING_BLOB.match(text, start, end)
        if blob is not None and _NONBLANK.search(text, blob.end(), end) is not None:
            start = blob.end()
        if start == before:
            return start, marked


def _is_fwd_wrapped(text: str, start: int, end: int) -> bool:
    """Step 6: ``subj-fwd-hdr`` at the start and ``subj-fwd-trl`` at the end."""
    return (end - start > len(_FWD_HEADER)
            and text[start:start + len(_FWD_HEADER)].lower() == _FWD_HEADER
            and text[end - 1] == "]")


def collation_key(text: str) -> str:
    """``i;unicode-casemap`` (RFC 5051 via RFC 5256 §7): case folded, NFKD-decomposed."""
    return unicodedata.normalize("NFKD", text.casefold())
