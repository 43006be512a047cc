"""The exclusive-access lock on a maildrop (RFC 1939 §4).

Theory of operation
-------------------
RFC 1939 §4 has the server lock the maildrop between login and the end of the session, so that
no other POP3 session sees message numbers shift or deletes what this one is showing. mailpost
serves every protocol from one process, so the lock is a set of account ids in memory: taking
it is a set insertion, and it cannot outlive the process (a crash or ``kill -9`` releases it,
which is what security catalogue P3 asks of a lock file). The session takes it after a
successful login and releases it on every way out (QUIT, error, timeout, connection loss), in
a ``finally``.

IMAP sessions do not take this lock: an account used with both protocols at once would
otherwise lock its own IMAP client out. The POP3 snapshot stays coherent anyway: UIDs are never
reused, so a message that IMAP expunged is reported as missing (``-ERR`` on RETR), never
replaced by another one.
"""

from __future__ import annotations


class MaildropLocks:
    """Which accounts have a POP3 session in the TRANSACTION state right now."""

    __slots__ = ("_held",)

    def __init__(self) -> None:
        self._held: set[int] = set()

    def acquire(self, account_id: int) -> bool:
        """Take the lock; False if another session holds it (``-ERR [IN-USE]``)."""
        if account_id in self._held:
            return False
        self._held.add(account_id)
        return True

    def release(self, account_id: int) -> None:
        """Give the lock back; releasing a lock that is not held is harmless."""
        self._held.discard(account_id)

    def held(self, account_id: int) -> bool:
        return account_id in self._held
