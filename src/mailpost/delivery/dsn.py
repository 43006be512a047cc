"""Delivery status notifications: the bounce and the delay warning (RFC 3464, RFC 3461).

Theory of operation
===================

A report is a ``multipart/report; report-type=delivery-status`` message (RFC 3464 §2, RFC 6522)
with three parts: a short human-readable explanation, the machine-readable
``message/delivery-status`` part (one per-message block, then one block per recipient), and
the returned content. RFC 3461 §4.3: ``RET=FULL`` returns the whole message, ``RET=HDRS`` only
its header; without RET we return the header (the choice RFC 3461 leaves to the MTA, and the one
that does not mail a large attachment back). A delay warning returns only the header, because it
reports no failure (RFC 3461 §4.3, last paragraph).

Who is told is decided by :func:`wants_report`: RFC 3461 §5.1 NOTIFY=NEVER suppresses every
report; an explicit NOTIFY list is obeyed as written; no NOTIFY means FAILURE,DELAY (the
interpretation RFC 3461 §4.1 allows). A null reverse-path never gets a report (RFC 5321 §4.5.5:
bounces of bounces would loop); :mod:`mailpost.delivery.queue` checks that before calling here.

The report itself is sent with a null reverse-path, from ``MAILER-DAEMON@<hostname>``.
"""

from __future__ import annotations

import email
import email.policy
import email.utils
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from email.message import Message
from email.mime.base import MIMEBase
from email.mime.message import MIMEMessage
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText

from mailpost.store.types import OutboundRecipient, QueueEntry

_ENHANCED = re.compile(r"^([245])\.(\d{1,3})\.(\d{1,3})\b")
_HEADER_END = re.compile(rb"\r?\n\r?\n")
# Header and DSN field values we build contain only what we checked here: no CR/LF from a remote
# server's reply can start a new field (security catalogue S7).
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")


@dataclass(frozen=True, slots=True)
class RecipientReport:
    """What happened to one recipient, as far as this report tells."""

    recipient: OutboundRecipient
    status: str                   # RFC 3463 enhanced status, e.g. "5.1.1"
    diagnostic: str | None = None  # the remote server's reply, e.g. "550 5.1.1 no such user"
    remote_mta: str | None = None


def wants_report(recipient: OutboundRecipient, action: str) -> bool:
    """RFC 3461 §4.1 and §6.2: does this recipient's NOTIFY ask for a ``failed``/``delayed``
    report?"""
    keywords = {k.strip().upper() for k in (recipient.notify or "FAILURE,DELAY").split(",")}
    if "NEVER" in keywords:
        return False
    return ("FAILURE" if action == "failed" else "DELAY") in keywords


def status_of(code: int, text: str) -> str:
    """The enhanced status code in a reply, else one derived from the reply code's class."""
    match = _ENHANCED.match(text)
    if match and match.group(1) == str(code // 100):
        return ".".join(match.groups())
    return f"{code // 100}.0.0" if code // 100 in (4, 5) else "4.0.0"


def _clean(text: str) -> str:
    return _CONTROL.sub(" ", text).strip()[:900]


def _per_message_block(entry: QueueEntry, hostname: str) -> Message:
    block = Message()
    block["Reporting-MTA"] = f"dns; {hostname}"
    if entry.envid:
        block["Original-Envelope-Id"] = _clean(entry.envid)
    block["Arrival-Date"] = email.utils.format_datetime(entry.created)
    return block


def _recipient_block(report: RecipientReport, action: str, now: datetime,
                     retry_until: datetime | None) -> Message:
    block = Message()
    if report.recipient.orcpt:
        block["Original-Recipient"] = _clean(report.recipient.orcpt)
    block["Final-Recipient"] = f"rfc822; {_clean(report.recipient.address)}"
    block["Action"] = action
    block["Status"] = report.status
    if report.remote_mta:
        block["Remote-MTA"] = f"dns; {_clean(report.remote_mta)}"
    if report.diagnostic:
        block["Diagnostic-Code"] = f"smtp; {_clean(report.diagnostic)}"
    block["Last-Attempt-Date"] = email.utils.format_datetime(now)
    if retry_until is not None:
        block["Will-Retry-Until"] = email.utils.format_datetime(retry_until)
    return block


def _explanation(action: str, reports: Sequence[RecipientReport], hostname: str) -> str:
    if action == "failed":
        opening = ("This is the mail system at host {host}.\n\nYour message could not be "
                   "delivered to one or more recipients. It has been returned below.\n")
    else:
        opening = ("This is the mail system at host {host}.\n\nYour message has not been "
                   "delivered yet to the recipients below. Delivery will be retried; "
                   "you do not need to send it again.\n")
    lines = [opening.format(host=hostname)]
    for report in reports:
        reason = _clean(report.diagnostic) if report.diagnostic else report.status
        lines.append(f"<{_clean(report.recipient.address)}>: {reason}")
    return "\n".join(lines) + "\n"


def _returned_part(body: bytes, full: bool) -> Message:
    if full:
        return MIMEMessage(email.message_from_bytes(body, policy=email.policy.compat32))
    match = _HEADER_END.search(body)
    header = body[:match.start()] if match else body
    text = header.replace(b"\r\n", b"\n").decode("utf-8", "replace") + "\n"
    part = MIMEBase("text", "rfc822-headers")
    # 7bit when it can be (readable in the report); UTF-8 header text is base64-encoded.
    part.set_payload(text, "us-ascii" if text.isascii() else "utf-8")
    return part


def build_report(entry: QueueEntry, body: bytes, reports: Sequence[RecipientReport], *,
                 action: str, hostname: str, now: datetime,
                 retry_until: datetime | None = None) -> bytes:
    """The complete report message (CRLF line endings) to send to ``entry.sender``.

    ``action`` is ``"failed"`` (bounce) or ``"delayed"`` (warning); ``body`` is the message
    as it would be relayed (without our Return-Path line).
    """
    report = MIMEMultipart("report", report_type="delivery-status")
    report["From"] = f"Mail Delivery System <MAILER-DAEMON@{hostname}>"
    report["To"] = f"<{_clean(entry.sender)}>"
    report["Subject"] = ("Undelivered Mail Returned to Sender" if action == "failed"
                         else "Delayed Mail (still being retried)")
    report["Date"] = email.utils.format_datetime(now)
    report["Message-ID"] = email.utils.make_msgid(domain=hostname)
    report["Auto-Submitted"] = "auto-replied"  # RFC 3834 §5: no auto-replies to this
    report.attach(MIMEText(_explanation(action, reports, hostname), "plain"))
    status = MIMEBase("message", "delivery-status")
    blocks: list[Message | str] = [_per_message_block(entry, hostname)]
    blocks += [_recipient_block(r, action, now, retry_until) for r in reports]
    status.set_payload(blocks)
    report.attach(status)
    full = action == "failed" and (entry.ret or "").upper() == "FULL"
    report.attach(_returned_part(body, full))
    return report.as_bytes(policy=email.policy.SMTP)
