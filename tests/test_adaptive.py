"""The adaptive policy's logic on synthetic records (no clock, no timing asserts): each
group's limit reacts to 429s, errors and latency growth; the limit shared by all groups
bounds them at a shared knee, ignores one supplier's pushback, and never starves a group."""

from __future__ import annotations

from typing import Callable

import pytest

from harness.policies.adaptive import Adaptive
from harness.policies.limits import Limit
from harness.scenario import Unit


def _units(groups: dict[str, int]) -> list[Unit]:
    return [Unit(f"{g}{i}", g) for g, n in groups.items() for i in range(n)]


def _policy(groups: dict[str, int], **kwargs) -> Adaptive:
    policy = Adaptive(capacity=kwargs.pop("capacity", 1000), **kwargs)
    for unit in _units(groups):
        policy.arrive(unit)
    return policy


def _record(unit: Unit, start_ms: float, service_ms: float, status: str = "ok",
            retries: dict | None = None) -> tuple:
    start = int(start_ms * 1e6)
    return (unit.id, unit.group, "w", 1, 0, start, start + int(service_ms * 1e6), status,
            None, None, 1, 0, retries or {})


def _round(policy: Adaptive, t: float, service_ms: Callable[[list[Unit]], float],
           outcome: Callable[[Unit], dict] = lambda unit: {}) -> tuple[float, list[Unit]]:
    """Hand out everything the policy allows at ``t``, then finish it all: the service time
    is a function of what ran together (a shared bottleneck's queueing)."""
    handed = []
    while (unit := policy.next(0)) is not None:
        handed.append(unit)
    took = service_ms(handed)
    for unit in handed:
        policy.finished(unit, _record(unit, t, took, **outcome(unit)))
    return t + took, handed


def _drain_one_round(policy: Adaptive, t: float, service_ms: float, **outcome) -> float:
    return _round(policy, t, lambda handed: service_ms, lambda unit: outcome)[0]


def test_the_adaptive_limit_rises_while_fast_and_cuts_on_429s():
    policy = Adaptive.from_args([], {}, capacity=100)
    assert policy.label() == "adaptive(1,32)"
    for unit in _units({"a": 400}):
        policy.arrive(unit)
    t = 0.0
    for _ in range(12):  # clean, fast rounds: additive increase
        t = _drain_one_round(policy, t, 10)
    risen = policy.info()["limit_final"]["a"]
    assert risen >= 4
    t = _drain_one_round(policy, t, 10, retries={"429": 2})  # the supplier pushes back
    cut = policy.info()["limit_final"]["a"]
    assert cut == pytest.approx(max(1.0, risen * 0.9), abs=0.01) and cut < risen
    info = policy.info()
    assert info["limit_events"]["down"] == 1  # one cut per round, not one per rejection
    limits = [limit for _, _, limit in info["limit_trajectory"]]
    assert limits[0] == 1 and max(limits) == pytest.approx(risen, abs=0.5) and limits[-1] == cut


def test_the_adaptive_limit_cuts_on_latency_growth_and_errors():
    policy = _policy({"a": 100}, start=4, maximum=8)
    t = _drain_one_round(policy, 0, 10)
    before = policy.info()["limit_final"]["a"]
    t = _drain_one_round(policy, t, 50)  # 5x the unloaded service time: queueing
    assert policy.info()["limit_final"]["a"] < before
    policy = _policy({"b": 10}, start=4, maximum=8)
    _drain_one_round(policy, 0, 10, status="error")
    assert policy.info()["limit_final"]["b"] == 2


def _shared_knee(handed: list[Unit]) -> float:
    """One bottleneck for every group: 10 ms up to 10 units at once, then queueing."""
    return 10.0 * (1 + max(0, len(handed) - 10) / 2)


def test_the_shared_limit_holds_all_groups_near_a_shared_knee():
    policy = _policy({f"s{i}": 300 for i in range(10)})
    assert policy.info()["shared_limit_final"] == 10  # the sum of the groups' starts
    t, widths = 0.0, []
    for _ in range(60):
        t, handed = _round(policy, t, _shared_knee)
        widths.append(len(handed))
    info = policy.info()
    # Each group alone saw no reason to stop at one: the knee is in all groups together.
    assert min(info["limit_final"].values()) >= 2
    assert info["shared_events"]["down"] >= 1
    # ... yet the shared limit kept the total within a few units of the knee, never 10 x 2.
    assert max(widths[10:]) <= 14 and min(widths) >= 10
    shared = [limit for _, limit in info["shared_trajectory"]]
    assert max(shared) <= 14 and shared[-1] == info["shared_limit_final"]


def test_one_suppliers_429s_cut_its_own_limit_not_the_shared_one():
    policy = _policy({"a": 200, "b": 200})
    t = 0.0
    for _ in range(8):
        t, _ = _round(policy, t, lambda handed: 10)
    before = policy.info()
    t, _ = _round(policy, t, lambda handed: 10,
                  lambda unit: {"retries": {"429": 1}} if unit.group == "a" else {})
    after = policy.info()
    assert after["limit_final"]["a"] < before["limit_final"]["a"]
    assert after["limit_final"]["b"] >= before["limit_final"]["b"]
    assert after["shared_events"]["down"] == 0
    assert after["shared_limit_final"] >= before["shared_limit_final"]


def test_a_group_with_nothing_running_may_always_start_one():
    policy = _policy({"a": 50, "b": 50, "c": 50}, start=2, maximum=8)
    assert policy.info()["shared_limit_final"] == 6
    t, handed = _round(policy, 0.0, lambda handed: 10, lambda unit: {"status": "error"})
    assert len(handed) == 6
    assert policy.info()["shared_limit_final"] == 3  # a failure cuts the shared limit too
    # Every group's own limit fell to 1 and the shared one to 3: one unit each, no group
    # left waiting while the others' load fills the shared limit.
    _, handed = _round(policy, t, lambda handed: 10)
    assert sorted(unit.group for unit in handed) == ["a", "b", "c"]


def test_a_limit_in_nobodys_use_does_not_rise():
    limit = Limit(4.0)
    assert limit.observe(0, 10, ceiling=8, busy=False) == "hold" and limit.limit == 4
    assert limit.observe(10, 20, ceiling=8) == "up" and limit.limit == pytest.approx(4.25)
    assert Limit(8.0).observe(0, 10, ceiling=8) == "hold"  # at its ceiling
