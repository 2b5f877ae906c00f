"""The lanes policy without running anything: heavy units keep to their own slots."""

from __future__ import annotations

import pytest

from harness.modes import ModeSpec
from harness.policies import get_policy
from harness.policies.base import PolicyError
from harness.scenario import Unit


def units(spec: str) -> list[Unit]:
    return [Unit(f"u{i}", "big" if kind == "B" else "small") for i, kind in enumerate(spec)]


def drain(policy):
    """Hand out what may go now (no unit finishes): the units running at once."""
    out = []
    while (unit := policy.next(0)) is not None:
        out.append(unit)
    return out


def test_heavy_units_never_take_the_other_lane_and_vice_versa():
    policy = get_policy("lanes").from_args(["1"], {}, capacity=4)
    for unit in units("BBBsssss"):
        policy.arrive(unit)
    first = drain(policy)
    assert [u.group for u in first] == ["small"] * 3 + ["big"]  # 3 slots + 1 lane slot
    assert policy.pending == 4
    policy.finished(first[-1])  # the monster's slot frees: only a monster may take it
    (nxt,) = drain(policy)
    assert nxt.group == "big"
    policy.finished(first[0])
    (nxt,) = drain(policy)
    assert nxt.group == "small"
    assert policy.info()["peak_heavy"] == 1 and policy.info()["peak_other"] == 3


def test_one_slot_is_shared_and_the_label_and_arguments_are_checked():
    policy = get_policy("lanes").from_args([], {}, capacity=1)
    for unit in units("Bs"):
        policy.arrive(unit)
    assert len(drain(policy)) == 1
    assert ModeSpec.parse("threads+lanes(2,monster)").policy_args == ("2", "monster")
    assert get_policy("lanes").from_args(["2", "monster"], {}, 8).label() == "lanes(2,monster)"
    with pytest.raises(PolicyError):
        get_policy("lanes").from_args(["0"], {}, 4)
    remaining = get_policy("lanes").from_args([], {}, 2)
    for unit in units("sB"):
        remaining.arrive(unit)
    assert {u.id for u in remaining.remaining()} == {"u0", "u1"} and remaining.pending == 0
