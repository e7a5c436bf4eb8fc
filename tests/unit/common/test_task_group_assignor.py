"""The stream processor's assignor hands out whole task groups: partition `p` of every input
to the owner of group `p % groups`, so one transactional id never spans two instances."""

from __future__ import annotations

from collections import Counter

from aiokafka.coordinator.protocol import ConsumerProtocolMemberMetadata

from optisync_common.txstream import task_group_assignor

INPUTS = ("commands", "roster")


class _Cluster:
    def __init__(self, partitions: int) -> None:
        self.partitions = partitions

    def partitions_for_topic(self, topic: str) -> set[int]:
        return set(range(self.partitions))


def _assign(
    groups: int, members: list[str], partitions: int = 12
) -> dict[str, set[tuple[str, int]]]:
    assignor = task_group_assignor(groups)
    metadata = {m: assignor.metadata(INPUTS) for m in members}
    assert all(isinstance(m, ConsumerProtocolMemberMetadata) for m in metadata.values())
    result = assignor.assign(_Cluster(partitions), metadata)
    return {
        member: {(topic, p) for topic, ps in assignment.assignment for p in ps}
        for member, assignment in result.items()
    }


def test_every_partition_goes_to_exactly_one_member() -> None:
    for groups in (1, 2, 3, 4, 12):
        for count in (1, 2, 3, 5):
            assigned = _assign(groups, [f"m{i}" for i in range(count)])
            taken = Counter(tp for tps in assigned.values() for tp in tps)
            assert set(taken) == {(t, p) for t in INPUTS for p in range(12)}
            assert set(taken.values()) == {1}


def test_a_member_holds_whole_groups_of_every_input() -> None:
    assigned = _assign(3, ["b", "a"])
    assert assigned["a"] == {(t, p) for t in INPUTS for p in range(12) if p % 3 in (0, 2)}
    assert assigned["b"] == {(t, p) for t in INPUTS for p in range(12) if p % 3 == 1}


def test_members_beyond_the_group_count_stand_by() -> None:
    assigned = _assign(2, ["m1", "m2", "m3"])
    assert assigned["m3"] == set()
    assert {p for _, p in assigned["m1"]} == set(range(0, 12, 2))


def test_the_protocol_name_tells_group_counts_apart() -> None:
    assert task_group_assignor(2).name != task_group_assignor(3).name
    assert task_group_assignor(2) is task_group_assignor(2)
