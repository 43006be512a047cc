"""The MTA-STS policy cache table (schema v7): one row per recipient domain.

Reads go through the read pool, writes through the writer like every other change; the rows
are small and change at most once per policy ``max_age`` (usually days), so no index beyond
the primary key is needed. Expired rows are kept until replaced: the caller decides what an
expired policy means (RFC 8461 §5.1: it no longer applies).
"""

from __future__ import annotations

import sqlite3

from mailpost.store.sqlite.rows import epoch, from_epoch
from mailpost.store.sqlite.writer import WriteContext
from mailpost.store.types import StoredPolicy


def get_policy(conn: sqlite3.Connection, domain: str) -> StoredPolicy | None:
    row = conn.execute("SELECT domain, policy_id, policy, expires FROM mta_sts_policies"
                       " WHERE domain = ?", (domain.lower(),)).fetchone()
    if row is None:
        return None
    expires = from_epoch(row["expires"])
    assert expires is not None
    return StoredPolicy(row["domain"], row["policy_id"], row["policy"], expires)


def put_policy(ctx: WriteContext, policy: StoredPolicy) -> None:
    ctx.conn.execute(
        "INSERT INTO mta_sts_policies (domain, policy_id, policy, expires) VALUES (?, ?, ?, ?)"
        " ON CONFLICT (domain) DO UPDATE SET policy_id = excluded.policy_id,"
        " policy = excluded.policy, expires = excluded.expires",
        (policy.domain.lower(), policy.policy_id, policy.text, epoch(policy.expires)))
