"""Bootstrap intervals of steering scores, checked on data whose answer is known."""

from __future__ import annotations

import math

import numpy as np
import pytest

from chunky.measure.stats import Estimate, bootstrap_mean, paired_bootstrap_delta, relative_change


def test_mean_interval_matches_the_normal_approximation_on_a_large_sample():
    rng = np.random.default_rng(1)
    x = rng.normal(10.0, 2.0, size=2000)
    e = bootstrap_mean(x, n_boot=4000, seed=3)
    se = x.std(ddof=1) / math.sqrt(x.size)
    assert e.value == pytest.approx(x.mean())
    assert e.n == 2000
    # The percentile interval of a mean is close to mean ± 1.96 SE for a large normal sample.
    assert e.low == pytest.approx(x.mean() - 1.96 * se, abs=0.25 * se)
    assert e.high == pytest.approx(x.mean() + 1.96 * se, abs=0.25 * se)


def test_binary_rate_interval_covers_the_binomial_interval():
    x = [1] * 30 + [0] * 70  # a rate of 0.30 over 100 examples
    e = bootstrap_mean(x, seed=0)
    se = math.sqrt(0.3 * 0.7 / 100)
    assert e.value == pytest.approx(0.30)
    assert e.low == pytest.approx(0.30 - 1.96 * se, abs=0.02)
    assert e.high == pytest.approx(0.30 + 1.96 * se, abs=0.02)


def test_missing_values_are_ignored_not_counted_as_zero():
    e = bootstrap_mean([1.0, None, 1.0, float("nan"), 1.0])
    assert e.value == 1.0 and e.n == 3 and e.low == 1.0 and e.high == 1.0


def test_empty_and_single_values():
    assert bootstrap_mean([]) == Estimate(None, None, None, 0)
    assert bootstrap_mean([None, None]).value is None
    assert bootstrap_mean([0.4]) == Estimate(0.4, 0.4, 0.4, 1)


def test_paired_interval_is_narrower_than_an_unpaired_one_when_examples_vary():
    # Examples differ a lot from each other, but the transform adds exactly +0.1 to each:
    # the paired delta is certain, while the two sides' own intervals are wide.
    rng = np.random.default_rng(7)
    base = rng.uniform(0, 0.8, size=50)
    d = paired_bootstrap_delta(base, base + 0.1, seed=1)
    assert d.value == pytest.approx(0.1)
    assert d.low == pytest.approx(0.1) and d.high == pytest.approx(0.1)
    side = bootstrap_mean(base, seed=1)
    assert side.high - side.low > 0.1


def test_paired_delta_uses_only_examples_with_both_sides():
    d = paired_bootstrap_delta([0.0, 0.0, None, 1.0], [1.0, 1.0, 1.0, None], seed=0)
    assert d.n == 2 and d.value == 1.0


def test_paired_delta_interval_contains_the_truth_on_noisy_data():
    rng = np.random.default_rng(11)
    a = rng.binomial(1, 0.2, size=400).astype(float)
    b = rng.binomial(1, 0.5, size=400).astype(float)
    d = paired_bootstrap_delta(a, b, seed=2)
    assert d.low < 0.3 < d.high
    assert d.low > 0.15  # clearly positive


def test_same_seed_same_interval_and_lengths_must_match():
    x, y = [0, 1, 1, 0, 1], [1, 1, 1, 0, 1]
    assert paired_bootstrap_delta(x, y, seed=5) == paired_bootstrap_delta(x, y, seed=5)
    with pytest.raises(ValueError):
        paired_bootstrap_delta([1, 2], [1])


def test_relative_change():
    assert relative_change(Estimate(0.2, 0.1, 0.3, 10), Estimate(0.1, 0.0, 0.2, 10)) == pytest.approx(0.5)
    assert relative_change(Estimate(0.0, 0.0, 0.0, 10), Estimate(0.1, 0.0, 0.2, 10)) is None
    assert Estimate.from_dict(Estimate(0.2, 0.1, 0.3, 10).to_dict()) == Estimate(0.2, 0.1, 0.3, 10)


def test_wilson_interval_of_one_prompts_samples():
    from chunky.measure.stats import wilson_interval

    lo, hi = wilson_interval(0, 20)
    assert lo == 0.0 and hi == pytest.approx(0.1611, abs=1e-3)
    lo, hi = wilson_interval(10, 20)
    assert (lo, hi) == (pytest.approx(0.2993, abs=1e-3), pytest.approx(0.7007, abs=1e-3))
    lo, hi = wilson_interval(20, 20)
    assert hi == 1.0 and lo == pytest.approx(0.8389, abs=1e-3)
    assert wilson_interval(0, 0) is None
