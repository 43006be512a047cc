"""Authentication shared by SMTP, IMAP and POP3.

``sasl`` runs the PLAIN and LOGIN exchanges without I/O and yields :class:`Credentials`;
``authenticator`` verifies them against the directory (argon2id hashes from ``passwords``);
``ratelimit`` slows down and finally drops clients that keep failing; ``apop`` and
``apop_key`` check POP3 APOP digests (RFC 1939 §7) against secrets sealed with a server key.
Nothing here knows which protocol is asking: each protocol maps :class:`Failure` and
:class:`AuthResult` reasons to its own replies.
"""

from __future__ import annotations

from mailpost.auth.authenticator import (
    AccountCheck,
    AccountLookup,
    Authenticator,
    AuthReason,
    AuthResult,
    VerificationCache,
)
from mailpost.auth.ratelimit import AuthThrottle, account_key, ip_key
from mailpost.auth.sasl import (
    MECHANISMS,
    Challenge,
    Credentials,
    Failure,
    LoginMechanism,
    PlainMechanism,
    SASLMechanism,
    Step,
    mechanism,
)

__all__ = [
    "MECHANISMS",
    "AccountCheck",
    "AccountLookup",
    "AuthReason",
    "AuthResult",
    "AuthThrottle",
    "Authenticator",
    "Challenge",
    "Credentials",
    "Failure",
    "LoginMechanism",
    "PlainMechanism",
    "SASLMechanism",
    "Step",
    "VerificationCache",
    "account_key",
    "ip_key",
    "mechanism",
]
