"""A small hand-built corpus: one message per MIME situation the golden tests pin down.

Messages are written with ``\\n`` and stored with CRLF line ends, as the store keeps them.
Sizes quoted in the golden tests were counted on these texts, not taken from the parser.
"""

from __future__ import annotations

import base64


def crlf(text: str | bytes) -> bytes:
    octets = text.encode("utf-8") if isinstance(text, str) else text
    return octets.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def _rfc9051_minutes() -> bytes:
    """The message of RFC 9051 §8: its header is 342 octets, its body 3028 octets in 92 lines."""
    header = crlf("""\
Date: Wed, 17 Jul 1996 02:23:25 -0700 (PDT)
From: Terry Gray <gray@cac.washington.edu>
Subject: IMAP4rev2 WG mtg summary and minutes
To: imap@cac.washington.edu
cc: minutes@CNRI.Reston.VA.US, John Klensin <KLENSIN@MIT.EDU>
Message-Id: <B27397-0100000@cac.washington.edu>
MIME-Version: 1.0
Content-Type: TEXT/PLAIN; CHARSET=US-ASCII

""")
    lines = [f"Minutes, item {i:03d}: discussed.".ljust(31) for i in range(91)]
    lines.append("End of minutes, thanks.")
    body = crlf("\n".join(lines) + "\n")
    assert (len(header), len(body), body.count(b"\n")) == (342, 3028, 92)
    return header + body


def _rfc9051_two_parts() -> bytes:
    """The two-part example of RFC 9051 §7.5.2: 1152 octets in 23 lines, then a base64 part of
    4554 octets in 73 lines, with a Content-ID and a Content-Description."""
    text_lines = ["x" * 48] * 22 + ["y" * 50]
    encoded = base64.b64encode(bytes(i % 251 for i in range(3306))).decode()
    widths = [60] * 45 + [61] * 28
    b64_lines, pos = [], 0
    for width in widths:
        b64_lines.append(encoded[pos:pos + width])
        pos += width
    assert pos == len(encoded)
    return crlf(
        "From: Terry Gray <gray@cac.washington.edu>\n"
        "MIME-Version: 1.0\n"
        'Content-Type: MULTIPART/MIXED; BOUNDARY="0-1"\n'
        "\n"
        "--0-1\n"
        "Content-Type: TEXT/PLAIN; CHARSET=US-ASCII\n"
        "\n" + "\n".join(text_lines) + "\n\n"
        "--0-1\n"
        "Content-Type: TEXT/PLAIN; CHARSET=US-ASCII; NAME=cc.diff\n"
        "Content-ID: <960723163407.20117h@cac.washington.edu>\n"
        "Content-Description: Compiler diff\n"
        "Content-Transfer-Encoding: BASE64\n"
        "\n" + "\n".join(b64_lines) + "\n\n"
        "--0-1--\n")


ALTERNATIVE = crlf("""\
From: "Alice Example" <alice@example.org>
To: bob@example.net
Subject: alternative
Date: Mon, 1 Jan 2024 10:00:00 +0000
Message-ID: <alt@example.org>
MIME-Version: 1.0
Content-Type: multipart/alternative; boundary="alt-1"

This is a multi-part message in MIME format.
--alt-1
Content-Type: text/plain; charset=utf-8; format=flowed
Content-Transfer-Encoding: quoted-printable

Caf=C3=A9 au lait.
--alt-1
Content-Type: text/html; charset=utf-8
Content-Transfer-Encoding: quoted-printable

<p>Caf=C3=A9 au lait.</p>
--alt-1--
""")

MIXED = crlf(b"""\
From: =?utf-8?q?J=C3=B6rg?= <joerg@example.de>
To: "Team: all" <team@example.de>, undisclosed-recipients:;
Cc: Bob <bob@example.net> (the builder)
Subject: =?iso-8859-1?q?Gr=FC=DFe?= from =?utf-8?b?SsO2cmc=?=
Date: Tue, 2 Jan 2024 11:00:00 +0100
In-Reply-To: <prev@example.de>
Message-ID: <mixed@example.de>
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary=outer

--outer
Content-Type: text/plain; charset=iso-8859-1
Content-Transfer-Encoding: 8bit

Gr\xfc\xdfe
--outer
Content-Type: application/pdf; name="report.pdf"
Content-Disposition: attachment;
 filename*0*=iso-8859-1''%C4rger;
 filename*1*=%20und%20mehr.pdf
Content-Transfer-Encoding: base64
Content-Language: de

JVBERi0xLjQK
--outer
Content-Type: message/rfc822
Content-Description: forwarded

From: carol@example.com
Subject: inner
Date: Wed, 3 Jan 2024 12:00:00 +0000

Inner body.
--outer--
""")

EIGHT_BIT_HEADERS = crlf("""\
From: Jörg <jörg@example.de>
To: bob@example.net
Subject: Grüße
MIME-Version: 1.0
Content-Type: text/plain; charset=utf-8; name="Grüße.txt"
Content-Transfer-Encoding: 8bit

Grüße
""")

MISSING_CLOSE = crlf("""\
From: a@example.org
Content-Type: multipart/mixed; boundary="b1"

preamble
--b1

no content type here
--b1
Content-Type: text/plain

last part, no close delimiter
""")

NO_CONTENT_TYPE = crlf("""\
From: x@example.org
Subject: hi

Hello
""")

NESTED = crlf("""\
From: nest@example.org
Content-Type: multipart/mixed; boundary=L1

--L1
Content-Type: multipart/alternative; boundary=L2

--L2
Content-Type: text/plain

plain
--L2
Content-Type: multipart/related; boundary=L3

--L3
Content-Type: text/html

<img src="cid:i1">
--L3
Content-Type: image/png
Content-ID: <i1>
Content-Transfer-Encoding: base64

iVBORw0KGgo=
--L3--
--L2--
--L1--
""")

DIGEST = crlf("""\
From: list@example.org
Subject: digest
MIME-Version: 1.0
Content-Type: multipart/digest; boundary=d

--d

From: a@example.org
Subject: one

first
--d
Content-Type: message/rfc822

From: b@example.org
Subject: two

second
--d--
""")

# The features of Dovecot's own BODYSTRUCTURE test message (folded quoted boundary, every
# extension field, an encapsulated multipart with an invalid transfer encoding), own text.
DOVECOT_FEATURES = crlf("""\
From: user@example.org
Date: Sat, 24 Mar 2007 23:00:00 +0200
Mime-Version: 1.0
Content-Type: multipart/mixed; boundary="the
 edge"

Preamble of the root
--the edge
Content-Type: text/x-notes; charset=us-ascii; note="say \\"hi\\""
Content-ID: <notes@example.org>
Content-MD5: c2F5IGhpCg==
Content-Disposition: inline; kind=short
Content-Description: some notes
Content-Language: en, fi, se
Content-Location: http://example.org/notes.txt

say hi

--the edge
Content-Type: message/rfc822

From: inner@example.org
To: to1@example.org, to2@example.org
Date: Sun, 12 Aug 2012 12:34:56 +0300
Subject: forwarded thing
Content-Type: multipart/alternative; boundary="in"

Inner preamble
--in
Content-Type: text/html
Content-Transfer-Encoding: 8bit

<p>hi</p>

--in
Content-Type: text/plain
Content-Transfer-Encoding: ?broken

hi again

--in--
Inner epilogue

--the edge--
Root epilogue
""")

RFC2231_EXAMPLES = crlf("""\
From: a@example.org
Content-Type: multipart/mixed; boundary=x

--x
Content-Type: application/x-stuff;
 title*=us-ascii'en-us'This%20is%20%2A%2A%2Afun%2A%2A%2A

1
--x
Content-Type: application/x-stuff;
 title*0*=us-ascii'en'This%20is%20even%20more%20;
 title*1*=%2A%2A%2Afun%2A%2A%2A%20;
 title*2="isn't it!"

2
--x
Content-Type: application/octet-stream; name*0=long; name*1=name.txt;
 charset*=utf-8''us-ascii
Content-Disposition: attachment; filename*=x-unknown''%E4%F6.txt

3
--x--
""")

RFC9051_MINUTES = _rfc9051_minutes()
RFC9051_TWO_PARTS = _rfc9051_two_parts()

ALL = {
    "rfc9051-minutes": RFC9051_MINUTES,
    "rfc9051-two-parts": RFC9051_TWO_PARTS,
    "alternative": ALTERNATIVE,
    "mixed": MIXED,
    "eight-bit-headers": EIGHT_BIT_HEADERS,
    "missing-close": MISSING_CLOSE,
    "no-content-type": NO_CONTENT_TYPE,
    "nested": NESTED,
    "digest": DIGEST,
    "dovecot-features": DOVECOT_FEATURES,
    "rfc2231": RFC2231_EXAMPLES,
}
