"""Attribute weights (paper eq. 1), per-candidate sampling, and the replay buffer (eq. 2)."""

from __future__ import annotations

from collections import Counter

import pytest

from chunky.surf.buffer import BufferItem, ReplayBuffer
from chunky.surf.pools import AttributePool
from chunky.surf.sampler import CandidateSampler, WeightTable, attribute_weights, slot_rng

POOL = AttributePool.from_texts([f"attribute {i}" for i in range(40)], "test")


def test_weights_sum_the_scores_of_buffer_entries_containing_each_attribute():
    w = attribute_weights([(80.0, ["a", "b"]), (60.0, ["b", "c"]), (0.0, ["d"]), (30.0, ["a", "a"])])
    assert w == {"a": 110.0, "b": 140.0, "c": 60.0}  # zero scores add nothing; duplicates count once


def test_weighted_draws_follow_P_a():
    w = {"attribute 1": 300.0, "attribute 2": 100.0}
    table = WeightTable(w)
    counts = Counter()
    n = 20000
    for i in range(n):
        counts.update(table.draw(slot_rng(0, i), 1))
    share = counts["attribute 1"] / n
    assert share == pytest.approx(0.75, abs=0.015)


def test_sampled_candidates_favour_high_weight_attributes_and_mix_in_exploration():
    sampler = CandidateSampler(POOL, max_attributes=5)
    weights = {"attribute 3": 90.0} | {f"attribute {i}": 2.0 for i in range(10, 20)}
    table = WeightTable(weights)
    counts: Counter[str] = Counter()
    explore: Counter[str] = Counter()
    for i in range(4000):
        s = sampler.sample(table, slot_rng(1, i))
        counts.update(s.weighted)
        explore.update(s.explore)
        assert set(s.attributes) == set(s.weighted) | set(s.explore)
    others = [counts[a] for a in weights if a != "attribute 3"]
    assert counts["attribute 3"] > 3 * max(others) and min(others) > 0
    assert set(counts) == set(weights)  # weighted draws only where w(a) > 0
    assert len(explore) > 30  # exploration reaches most of the pool


def test_first_iteration_samples_uniformly_over_the_pool():
    sampler = CandidateSampler(POOL, max_attributes=5)
    counts: Counter[str] = Counter()
    for i in range(4000):
        counts.update(sampler.sample(WeightTable({}), slot_rng(2, i)).attributes)
    assert set(counts) == set(POOL.attributes)
    mean = sum(counts.values()) / len(counts)
    assert max(counts.values()) < 1.35 * mean and min(counts.values()) > 0.65 * mean


def test_no_candidate_is_ever_empty_and_none_exceeds_k():
    # The worst case of the authors' release: single-attribute records and heavy thinning.
    records_pool = AttributePool.from_lists([["solo a"], ["solo b"], ["x", "y"]], "r")
    for pool in (POOL, records_pool):
        for k in (1, 3, 5):
            sampler = CandidateSampler(pool, max_attributes=k, thinning={i: 1.0 for i in range(6)})
            for i in range(3000):
                table = WeightTable({} if i % 2 else {pool.attributes[0]: 5.0})
                s = sampler.sample(table, slot_rng(3, k, i))
                assert 1 <= len(s.attributes) <= k
                assert len(set(s.attributes)) == len(s.attributes)


def test_exploration_draws_come_from_one_data_record():
    pool = AttributePool.from_lists([["r1 a", "r1 b", "r1 c"], ["r2 a", "r2 b"]], "r")
    sampler = CandidateSampler(pool, max_attributes=5, thinning={i: 0.0 for i in range(6)})
    for i in range(500):
        s = sampler.sample(WeightTable({"r1 a": 1.0}), slot_rng(4, i))
        groups = {a.split()[0] for a in s.explore}
        assert len(groups) <= 1


def test_sampling_is_a_pure_function_of_its_seed_parts():
    sampler = CandidateSampler(POOL)
    table = WeightTable({"attribute 1": 5.0, "attribute 2": 1.0})
    a = [sampler.sample(table, slot_rng(7, 0, 3, i, 0, "digest")) for i in range(50)]
    b = [sampler.sample(table, slot_rng(7, 0, 3, i, 0, "digest")) for i in range(50)]
    c = [sampler.sample(table, slot_rng(8, 0, 3, i, 0, "digest")) for i in range(50)]
    assert a == b and a != c


def test_uniform_mode_ignores_the_weights():
    sampler = CandidateSampler(POOL, mode="uniform")
    table = WeightTable({"attribute 1": 1000.0})
    counts: Counter[str] = Counter()
    for i in range(2000):
        s = sampler.sample(table, slot_rng(5, i))
        assert s.weighted == () and 1 <= len(s.attributes) <= 5
        counts.update(s.attributes)
    assert counts["attribute 1"] < 3 * (sum(counts.values()) / len(POOL))


def _item(score, it, slot, attrs=("a",)):
    return BufferItem(candidate_id=1000 * it + slot, score=score, attributes=attrs, iteration=it, slot=slot)


def test_replay_buffer_keeps_the_top_n_with_deterministic_ties():
    buf = ReplayBuffer(3)
    buf.add([_item(50, 0, 0), _item(90, 0, 1), _item(70, 0, 2), _item(70, 0, 3)])
    assert [(b.score, b.slot) for b in buf] == [(90, 1), (70, 2), (70, 3)]
    buf.add([_item(70, 1, 0), _item(95, 1, 1)])
    assert [(b.score, b.iteration, b.slot) for b in buf] == [(95, 1, 1), (90, 0, 1), (70, 0, 2)]
    assert buf.best == 95 and buf.mean == pytest.approx(85)
    # the same items in another order give the same buffer and digest
    other = ReplayBuffer(3)
    other.add([_item(70, 1, 0), _item(95, 1, 1), _item(70, 0, 3), _item(70, 0, 2), _item(90, 0, 1), _item(50, 0, 0)])
    assert [b.candidate_id for b in other] == [b.candidate_id for b in buf]
    assert other.digest() == buf.digest()
    assert ReplayBuffer(3).digest() != buf.digest()
