"""Conformance: the MTA-STS policy cache kept by the store."""

from __future__ import annotations

from datetime import UTC, datetime

from mailpost.store.interface import MailStore
from mailpost.store.types import StoredPolicy

WHEN = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


async def test_put_get_and_replace(store: MailStore) -> None:
    assert await store.get_mta_sts_policy("b.test") is None
    first = StoredPolicy("B.Test", "one", "version: STSv1\r\nmode: enforce\r\n", WHEN)
    await store.put_mta_sts_policy(first)
    stored = await store.get_mta_sts_policy("b.test")
    assert stored == StoredPolicy("b.test", "one", first.text, WHEN)
    await store.put_mta_sts_policy(StoredPolicy("b.test", "two", "mode: none", WHEN))
    replaced = await store.get_mta_sts_policy("B.TEST")
    assert replaced is not None and (replaced.policy_id, replaced.text) == ("two", "mode: none")
