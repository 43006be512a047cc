"""QUOTA (RFC 9208): GETQUOTA, GETQUOTAROOT and SETQUOTA.

Theory of operation
-------------------
An account's quota covers all of its mailboxes, so there is at most one quota root per
account, named ``""`` (RFC 9208 §4.2.2 shows that very name). The root exists only while
the account has a limit: with no limit, GETQUOTAROOT answers ``* QUOTAROOT INBOX`` with no
root (§4.2.2, second example) and GETQUOTA on any root is ``NO [NONEXISTENT]``.

The limits are read afresh from the store at every command, because the administrator may
change them while the session is open (the session's ``Account`` is a login-time copy).
Resources (§5):

* STORAGE is in units of 1024 octets (§5.1). Both the usage and the limit are rounded up,
  so a non-zero limit never reads as 0 ("any usage is prohibited", §3.1.2);
* MESSAGE is the exact number of messages (§5.2).

Only resources that have a limit are listed: "Resources not named in the list are not
limited in the quota root" (§4.2.1).

SETQUOTA is refused with ``NO [NOPERM]``: quotas are the administrator's (the admin CLI),
and QUOTASET is not advertised (§4.1.3).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mailpost.imap import commands as cmd
from mailpost.imap import responses as rsp
from mailpost.imap.handlers.mailbox_names import account_id, answers_store_errors
from mailpost.imap.responses import Response, Tagged
from mailpost.store.types import Account

if TYPE_CHECKING:
    from mailpost.imap.session import IMAPSession

QUOTA_ROOT = ""
KIB = 1024


def _kib(octets: int) -> int:
    return -(-octets // KIB)


def has_quota(account: Account) -> bool:
    return account.quota_bytes is not None or account.quota_messages is not None


def quota_resources(account: Account, used_bytes: int,
                    used_messages: int) -> list[tuple[str, int, int]]:
    """(resource, usage, limit) triples for the limits the account has (RFC 9208 §5)."""
    resources = []
    if account.quota_bytes is not None:
        resources.append(("STORAGE", _kib(used_bytes), _kib(account.quota_bytes)))
    if account.quota_messages is not None:
        resources.append(("MESSAGE", used_messages, account.quota_messages))
    return resources


async def _current_account(session: IMAPSession) -> Account:
    fresh = await session.store.get_account_by_id(account_id(session))
    assert session.account is not None
    return fresh if fresh is not None else session.account


async def _quota_line(session: IMAPSession, account: Account) -> bytes:
    used_bytes, used_messages = await session.store.account_usage(account.id)
    return rsp.quota(QUOTA_ROOT, quota_resources(account, used_bytes, used_messages))


@answers_store_errors
async def getquotaroot(session: IMAPSession, command: cmd.Command) -> Response:
    """RFC 9208 §4.1.2: the mailbox need not exist."""
    assert isinstance(command, cmd.GetQuotaRoot)
    account = await _current_account(session)
    roots = [QUOTA_ROOT] if has_quota(account) else []
    session.write(rsp.quotaroot(command.mailbox, roots, utf8=session.utf8))
    if roots:
        session.write(await _quota_line(session, account))
    return Tagged(command.tag, "OK", "GETQUOTAROOT completed")


@answers_store_errors
async def getquota(session: IMAPSession, command: cmd.Command) -> Response:
    """RFC 9208 §4.1.1."""
    assert isinstance(command, cmd.GetQuota)
    account = await _current_account(session)
    if command.root != QUOTA_ROOT or not has_quota(account):
        return Tagged(command.tag, "NO", "No such quota root", "NONEXISTENT")
    session.write(await _quota_line(session, account))
    return Tagged(command.tag, "OK", "GETQUOTA completed")


async def setquota(session: IMAPSession, command: cmd.Command) -> Response:
    """RFC 9208 §4.1.3: not offered (no QUOTASET); limits are set by the administrator."""
    return Tagged(command.tag, "NO", "Quotas are set by the administrator", "NOPERM")
