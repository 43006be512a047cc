"""Failed-authentication throttling (security catalogue R8), driven by a fake clock."""

from __future__ import annotations

import pytest

from mailpost.auth.ratelimit import AuthThrottle, account_key, ip_key
from mailpost.config import LimitsConfig


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def throttle(clock: FakeClock) -> AuthThrottle:
    return AuthThrottle(clock=clock)


def fail(throttle: AuthThrottle, ip: str, account: str | None, times: int) -> None:
    for _ in range(times):
        throttle.record_failure(ip, account)


# --- keys ------------------------------------------------------------------------------------


def test_ipv4_key_is_the_address() -> None:
    assert ip_key("192.0.2.7") == "192.0.2.7"


def test_ipv6_key_is_the_slash_64() -> None:
    assert ip_key("2001:db8:1:2:aaaa::1") == "2001:db8:1:2::/64"
    assert ip_key("2001:db8:1:2:ffff:ffff:ffff:ffff") == "2001:db8:1:2::/64"
    assert ip_key("2001:db8:1:3::1") == "2001:db8:1:3::/64"


def test_ipv4_mapped_ipv6_is_ipv4() -> None:
    assert ip_key("::ffff:192.0.2.7") == "192.0.2.7"


def test_ipv6_zone_is_ignored() -> None:
    assert ip_key("fe80::1%eth0") == ip_key("fe80::2") == "fe80::/64"


def test_non_ip_peer_is_keyed_by_bounded_string() -> None:
    assert ip_key("unix-socket") == "peer:unix-socket"
    assert len(ip_key("x" * 10_000)) < 200


def test_account_key_is_lowercase_and_bounded() -> None:
    assert account_key("Alice@Example.TEST") == "alice@example.test"
    long_key = account_key("a" * 5000)
    assert len(long_key) < 100
    assert long_key == account_key("A" * 5000)


# --- delays ----------------------------------------------------------------------------------


def test_no_delay_without_failures(throttle: AuthThrottle) -> None:
    assert throttle.delay("192.0.2.1") == 0.0
    assert throttle.delay("192.0.2.1", "alice@example.test") == 0.0


def test_delay_doubles_up_to_the_cap(throttle: AuthThrottle) -> None:
    delays = []
    for _ in range(6):
        throttle.record_failure("192.0.2.1", None)
        delays.append(throttle.delay("192.0.2.1"))
    assert delays == [2.0, 4.0, 8.0, 15.0, 15.0, 15.0]


def test_custom_parameters() -> None:
    throttle = AuthThrottle(base_delay=1.0, max_delay=3.0)
    fail(throttle, "192.0.2.1", None, 1)
    assert throttle.delay("192.0.2.1") == 1.0
    fail(throttle, "192.0.2.1", None, 5)
    assert throttle.delay("192.0.2.1") == 3.0


def test_huge_failure_counts_stay_capped(throttle: AuthThrottle) -> None:
    fail(throttle, "192.0.2.1", None, 2000)
    assert throttle.delay("192.0.2.1") == 15.0


def test_other_ips_are_unaffected(throttle: AuthThrottle) -> None:
    fail(throttle, "192.0.2.1", None, 4)
    assert throttle.delay("192.0.2.2") == 0.0
    assert throttle.delay("2001:db8::1") == 0.0


def test_ipv6_failures_group_by_slash_64(throttle: AuthThrottle) -> None:
    for host in range(1, 6):
        throttle.record_failure(f"2001:db8:0:1::{host:x}", None)
    assert throttle.delay("2001:db8:0:1::beef") == 15.0
    assert throttle.too_many("2001:db8:0:1:ffff::1")
    assert not throttle.too_many("2001:db8:0:2::1")


def test_ipv4_mapped_shares_counter_with_ipv4(throttle: AuthThrottle) -> None:
    fail(throttle, "::ffff:192.0.2.9", None, 2)
    assert throttle.delay("192.0.2.9") == 4.0


def test_failures_expire_after_window(throttle: AuthThrottle, clock: FakeClock) -> None:
    fail(throttle, "192.0.2.1", "alice", 3)
    clock.advance(899.0)
    assert throttle.delay("192.0.2.1") == 8.0
    clock.advance(1.0)
    assert throttle.delay("192.0.2.1", "alice") == 0.0
    assert throttle.tracked_keys() == 0


def test_window_slides_with_each_failure(throttle: AuthThrottle, clock: FakeClock) -> None:
    fail(throttle, "192.0.2.1", None, 1)
    clock.advance(800.0)
    fail(throttle, "192.0.2.1", None, 1)
    clock.advance(800.0)
    # 1600 s after the first failure, but only 800 s after the last one.
    assert throttle.delay("192.0.2.1") == 4.0


def test_counting_restarts_after_expiry(throttle: AuthThrottle, clock: FakeClock) -> None:
    fail(throttle, "192.0.2.1", None, 4)
    clock.advance(901.0)
    fail(throttle, "192.0.2.1", None, 1)
    assert throttle.delay("192.0.2.1") == 2.0


def test_success_clears_ip_and_account(throttle: AuthThrottle) -> None:
    fail(throttle, "192.0.2.1", "alice@example.test", 3)
    fail(throttle, "198.51.100.1", "alice@example.test", 1)
    throttle.record_success("192.0.2.1", "ALICE@example.test")
    assert throttle.delay("192.0.2.1", "alice@example.test") == 0.0
    # Another network's own failures are not forgiven by alice's success elsewhere.
    assert throttle.delay("198.51.100.1") == 2.0


# --- per-account counters --------------------------------------------------------------------


def test_account_failures_from_anywhere_delay_the_account(throttle: AuthThrottle) -> None:
    for octet in range(1, 4):
        throttle.record_failure(f"192.0.2.{octet}", "Bob@Example.test")
    assert throttle.delay("203.0.113.5", "bob@example.TEST") == 8.0
    assert throttle.delay("203.0.113.5", "carol@example.test") == 0.0
    assert throttle.delay("203.0.113.5") == 0.0


def test_account_failures_never_lock_out(throttle: AuthThrottle) -> None:
    # A distributed attack on one account: every attempt from a different address.
    for octet in range(1, 200):
        throttle.record_failure(f"198.51.100.{octet}", "bob@example.test")
    assert throttle.delay("203.0.113.5", "bob@example.test") == 15.0
    assert not throttle.too_many("203.0.113.5")


def test_larger_of_ip_and_account_delay_applies(throttle: AuthThrottle) -> None:
    fail(throttle, "192.0.2.1", None, 3)
    fail(throttle, "198.51.100.1", "bob", 1)
    assert throttle.delay("192.0.2.1", "bob") == 8.0
    assert throttle.delay("198.51.100.1", "bob") == 2.0


# --- dropping --------------------------------------------------------------------------------


def test_too_many_after_max_failures(throttle: AuthThrottle, clock: FakeClock) -> None:
    fail(throttle, "192.0.2.1", "alice", 4)
    assert not throttle.too_many("192.0.2.1")
    fail(throttle, "192.0.2.1", "alice", 1)
    assert throttle.too_many("192.0.2.1")
    assert not throttle.too_many("192.0.2.2")
    clock.advance(900.0)
    assert not throttle.too_many("192.0.2.1")


def test_too_many_respects_max_failures_setting(clock: FakeClock) -> None:
    throttle = AuthThrottle(max_failures=2, clock=clock)
    fail(throttle, "192.0.2.1", None, 2)
    assert throttle.too_many("192.0.2.1")


# --- memory bound ----------------------------------------------------------------------------


def test_table_size_is_capped_evicting_oldest(clock: FakeClock) -> None:
    throttle = AuthThrottle(clock=clock, max_keys=3)
    for octet in range(1, 6):
        throttle.record_failure(f"192.0.2.{octet}", f"user{octet}")
        clock.advance(1.0)
    assert throttle.tracked_keys() == 6  # 3 networks + 3 accounts
    assert throttle.delay("192.0.2.1") == 0.0  # evicted
    assert throttle.delay("192.0.2.2") == 0.0  # evicted
    assert throttle.delay("192.0.2.5") == 2.0
    assert throttle.delay("192.0.2.9", "user5") == 2.0


def test_a_fresh_failure_protects_an_entry_from_eviction(clock: FakeClock) -> None:
    throttle = AuthThrottle(clock=clock, max_keys=2)
    throttle.record_failure("192.0.2.1", None)
    throttle.record_failure("192.0.2.2", None)
    throttle.record_failure("192.0.2.1", None)  # now the most recent
    throttle.record_failure("192.0.2.3", None)
    assert throttle.delay("192.0.2.1") == 4.0
    assert throttle.delay("192.0.2.2") == 0.0


def test_expired_entries_are_trimmed_on_record(clock: FakeClock) -> None:
    throttle = AuthThrottle(clock=clock)
    for octet in range(1, 51):
        throttle.record_failure(f"192.0.2.{octet}", None)
    clock.advance(1000.0)
    throttle.record_failure("198.51.100.1", None)
    assert throttle.tracked_keys() == 1


def test_from_limits_uses_configured_values(clock: FakeClock) -> None:
    limits = LimitsConfig(auth_max_failures=3, auth_fail_delay=1.0, auth_fail_delay_max=5.0,
                          auth_fail_window=60.0)
    throttle = AuthThrottle.from_limits(limits, clock=clock)
    fail(throttle, "192.0.2.1", None, 3)
    assert throttle.delay("192.0.2.1") == 4.0
    assert throttle.too_many("192.0.2.1")
    clock.advance(60.0)
    assert throttle.delay("192.0.2.1") == 0.0


def test_invalid_parameters_are_refused() -> None:
    with pytest.raises(ValueError):
        AuthThrottle(window=0)
    with pytest.raises(ValueError):
        AuthThrottle(max_failures=0)
