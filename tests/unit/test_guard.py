"""The guard's pure parts: counting failures per address, blocks that end, the
security events it reads and the nftables commands it writes."""

from __future__ import annotations

import pytest

from ami.protocol import AmiMessage
from guard.events import auth_failure, parse_remote_address
from guard.firewall import FirewallError, block_command, ruleset, table_name
from guard.main import handle
from guard.policy import Block, FailureCounter


def test_threshold_failures_within_the_window_block() -> None:
    counter = FailureCounter(threshold=3, window_s=60, block_s=300)
    assert counter.failure("127.0.0.2", 0.0) is None
    assert counter.failure("127.0.0.2", 10.0) is None
    assert counter.failure("127.0.0.2", 20.0) == Block("127.0.0.2", 300, 3)
    assert counter.is_blocked("127.0.0.2", 21.0)


def test_failures_older_than_the_window_do_not_count() -> None:
    counter = FailureCounter(threshold=3, window_s=60, block_s=300)
    counter.failure("10.0.0.1", 0.0)
    counter.failure("10.0.0.1", 30.0)
    assert counter.failure("10.0.0.1", 61.0) is None  # the first fell out of the window
    assert counter.counted("10.0.0.1") == 2
    assert counter.failure("10.0.0.1", 62.0) is not None


def test_addresses_are_counted_apart() -> None:
    counter = FailureCounter(threshold=2, window_s=60, block_s=300)
    assert counter.failure("10.0.0.1", 0.0) is None
    assert counter.failure("10.0.0.2", 1.0) is None
    assert not counter.is_blocked("10.0.0.1", 2.0)
    assert not counter.is_blocked("10.0.0.2", 2.0)


def test_a_block_ends_and_counting_starts_again() -> None:
    counter = FailureCounter(threshold=2, window_s=60, block_s=100)
    counter.failure("10.0.0.1", 0.0)
    assert counter.failure("10.0.0.1", 1.0) is not None
    assert counter.failure("10.0.0.1", 50.0) is None  # while blocked: not counted, no second block
    assert counter.is_blocked("10.0.0.1", 100.9)
    assert not counter.is_blocked("10.0.0.1", 101.0)
    assert counter.failure("10.0.0.1", 102.0) is None
    assert counter.counted("10.0.0.1") == 1
    assert counter.failure("10.0.0.1", 103.0) == Block("10.0.0.1", 100, 2)


def test_memory_is_bounded() -> None:
    counter = FailureCounter(threshold=5, window_s=60, block_s=300, max_addresses=3)
    for n in range(10):
        counter.failure(f"10.0.0.{n}", float(n))
    assert counter.counted("10.0.0.9") == 1
    assert counter.counted("10.0.0.0") == 0  # the oldest were forgotten
    assert sum(counter.counted(f"10.0.0.{n}") for n in range(10)) == 3


def test_stale_addresses_are_forgotten() -> None:
    counter = FailureCounter(threshold=5, window_s=60, block_s=300)
    counter.failure("10.0.0.1", 0.0)
    counter.expire(61.0)
    assert counter.counted("10.0.0.1") == 0


@pytest.mark.parametrize("kwargs", [{"threshold": 0}, {"window_s": 0}, {"block_s": 0}, {"max_addresses": 0}])
def test_nonsense_settings_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        FailureCounter(**kwargs)  # type: ignore[arg-type]


def _event(name: str, service: str = "PJSIP", remote: str = "IPV4/UDP/127.0.0.2/5060") -> AmiMessage:
    return AmiMessage({"Event": name, "Service": service, "RemoteAddress": remote, "AccountID": "term1"})


@pytest.mark.parametrize("name", ["InvalidAccountID", "ChallengeResponseFailed", "InvalidPassword", "FailedACL"])
def test_sip_failures_are_read(name: str) -> None:
    failure = auth_failure(_event(name))
    assert failure is not None
    assert (failure.kind, failure.address, failure.account) == (name, "127.0.0.2", "term1")


@pytest.mark.parametrize("message", [
    _event("ChallengeSent"), _event("SuccessfulAuth"), _event("InvalidPassword", service="AMI"),
    _event("InvalidAccountID", remote="garbage"), _event("InvalidAccountID", remote="IPV4/UDP/300.1.1.1/5060"),
    AmiMessage({"Event": "Newchannel"}),
])
def test_other_events_are_ignored(message: AmiMessage) -> None:
    assert auth_failure(message) is None


def test_remote_addresses() -> None:
    assert parse_remote_address("IPV4/UDP/192.0.2.7/5060") == "192.0.2.7"
    assert parse_remote_address("IPV6/UDP/2001:db8::1/5060") == "2001:db8::1"
    assert parse_remote_address("IPV4/UDP/127.0.0.1; drop table/5060") is None
    assert parse_remote_address("") is None


def test_nft_commands() -> None:
    assert table_name(15060) == "kinline_guard_15060"
    rules = ruleset(15060)
    assert rules.startswith("add table inet kinline_guard_15060\ndelete table inet kinline_guard_15060\n")
    assert "th dport 15060 drop" in rules
    assert block_command(15060, "127.0.0.2", 300) == (
        "add element inet kinline_guard_15060 blocked4 { 127.0.0.2 timeout 300s }\n")
    assert "blocked6 { 2001:db8::1 timeout" in block_command(15060, "2001:db8::1", 5)
    with pytest.raises(ValueError):
        block_command(15060, "127.0.0.2 }; flush ruleset", 300)
    with pytest.raises(ValueError):
        block_command(15060, "127.0.0.2", 0)


def test_both_doors_are_closed_to_a_blocked_address() -> None:
    """The apps' SIP port is in the same table's rules as the terminals': one block, both doors."""
    rules = ruleset(15060, (15070,))
    assert rules.startswith("add table inet kinline_guard_15060\n")  # still one table per stack
    assert "ip saddr @blocked4 meta l4proto { udp, tcp } th dport { 15060, 15070 } drop" in rules
    assert "ip6 saddr @blocked6 meta l4proto { udp, tcp } th dport { 15060, 15070 } drop" in rules
    assert "th dport { 15060, 15070 }" in ruleset(15060, (15060, 15070))  # no port twice
    assert "th dport 15060 drop" in ruleset(15060)
    for bad in (0, 70000):
        with pytest.raises(ValueError):
            ruleset(15060, (bad,))


def test_the_stack_guards_the_apps_door() -> None:
    from tools.config import REPO, load_config
    from tools.stack import guard_argv

    config = load_config(REPO / "config" / "test.toml")
    argv = guard_argv(config)
    assert argv[argv.index("--sip-port") + 1] == str(config.sip_port)
    assert argv[argv.index("--app-sip-port") + 1] == str(config.app_sip_port)


class FakeFirewall:
    def __init__(self, fail: bool = False) -> None:
        self.blocks: list[tuple[str, int]] = []
        self.fail = fail

    async def block(self, address: str, seconds: int) -> None:
        if self.fail:
            raise FirewallError("nft failed (1): no table")
        self.blocks.append((address, seconds))


async def test_events_in_blocks_out() -> None:
    counter = FailureCounter(threshold=3, window_s=60, block_s=120)
    firewall = FakeFirewall()
    events = [_event("ChallengeSent"), _event("InvalidAccountID"), _event("SuccessfulAuth"),
              _event("ChallengeResponseFailed"), _event("InvalidAccountID", remote="IPV4/UDP/127.0.0.3/5060"),
              _event("InvalidPassword", service="AMI"), _event("ChallengeResponseFailed"),
              _event("ChallengeResponseFailed")]  # the last comes while blocked
    for n, event in enumerate(events):
        await handle(event, counter, firewall, float(n))
    assert firewall.blocks == [("127.0.0.2", 120)]


async def test_a_failed_block_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    counter = FailureCounter(threshold=1, window_s=60, block_s=120)
    await handle(_event("InvalidAccountID"), counter, FakeFirewall(fail=True), 0.0)
    assert "[127.0.0.2] could not block after 1 failures: nft failed (1): no table" in caplog.text
    # Not taken as blocked: the next failure tries again.
    assert not counter.is_blocked("127.0.0.2", 1.0)
    firewall = FakeFirewall()
    await handle(_event("InvalidAccountID"), counter, firewall, 2.0)
    assert firewall.blocks == [("127.0.0.2", 120)]


async def test_a_trusted_relay_is_never_counted_nor_blocked() -> None:
    """A cluster node's guard: Kamailio (here 127.0.0.2) relays every terminal's failures."""
    counter = FailureCounter(threshold=2, window_s=60, block_s=120)
    firewall = FakeFirewall()
    trusted = frozenset({"127.0.0.2"})
    for n in range(5):
        await handle(_event("ChallengeResponseFailed"), counter, firewall, float(n), trusted)
    assert firewall.blocks == [] and counter.counted("127.0.0.2") == 0
    for n in range(2):  # anyone else still is
        await handle(_event("InvalidAccountID", remote="IPV4/UDP/127.0.0.3/5060"), counter, firewall, float(n),
                     trusted)
    assert firewall.blocks == [("127.0.0.3", 120)]
