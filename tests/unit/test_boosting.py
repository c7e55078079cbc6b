"""kcprice.boosting: oblivious trees with the pinball loss (a candidate for kc-price's trees)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kcprice.boosting import ObliviousBoosting


def data(n=3000, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 6))
    x[:, 5] = rng.integers(0, 4, n)  # a feature with few distinct values
    truth = np.where(x[:, 0] > 0.3, 1.0, 0.0) + 0.5 * x[:, 1] + 0.25 * x[:, 5]
    return x, truth, truth + rng.normal(0, 0.2, n)


def test_every_tree_is_oblivious_and_predict_is_the_sum_of_its_leaves():
    x, _, y = data(800)
    m = ObliviousBoosting(n_trees=20, depth=3, feature_share=0.5).fit(x, y)
    assert m.features.shape == m.thresholds.shape == (20, 3) and m.leaves.shape == (20, 8)
    want = []
    for row in x[:50]:  # one decision per level, read as a binary number, first level high
        leaf = [
            int("".join(str(int(row[f] > t)) for f, t in zip(fs, ts, strict=True)), 2)
            for fs, ts in zip(m.features, m.thresholds, strict=True)
        ]
        want.append(m.baseline + sum(m.leaves[k, j] for k, j in enumerate(leaf)))
    assert np.allclose(m.predict(x[:50]), want, rtol=0, atol=1e-12)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=2, max_size=400), st.integers(1, 255))
def test_a_bin_above_a_cut_is_a_value_above_its_threshold(values, n_borders):
    # Training splits on bins, serving on thresholds: the two rules must agree on every training value.
    x = np.array(values)[:, None]
    borders, bins = ObliviousBoosting(n_borders=n_borders)._quantize(x)
    assert len(borders[0]) <= n_borders
    for k in range(len(borders[0])):
        assert ((bins[0] > k) == (x[:, 0] > borders[0][k])).all()


def test_it_learns_and_its_prediction_is_the_quantile_asked():
    x, truth, y = data()
    m = ObliviousBoosting(n_trees=300, learning_rate=0.1, depth=4, feature_share=0.5, quantile=0.3).fit(x, y)
    p = m.predict(x)
    assert np.mean(np.abs(p - truth)) < 0.5 * np.mean(np.abs(np.median(y) - truth))
    assert 0.25 < np.mean(y < p) < 0.35  # the 0.3 quantile: ~30% of the sales below their value
    xt, truth_t, _ = data(seed=1)  # and out of sample
    assert np.mean(np.abs(m.predict(xt) - truth_t)) < 0.2


def test_the_same_seed_gives_the_same_trees_and_another_does_not():
    x, _, y = data(600)
    a, b, c = (ObliviousBoosting(n_trees=15, depth=3, seed=s).fit(x, y) for s in (0, 0, 1))
    assert (a.features == b.features).all() and (a.leaves == b.leaves).all()
    assert not (a.leaves == c.leaves).all()


def test_non_finite_rows_are_refused():
    x, _, y = data(100)
    x[3, 2] = np.nan
    with pytest.raises(ValueError, match="finite"):
        ObliviousBoosting(n_trees=2).fit(x, y)


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 8), st.integers(0, 2**32 - 1))
def test_a_leaf_code_is_the_decisions_read_as_a_binary_number(depth, seed):
    from kcprice.explain import leaf_code

    right = np.zeros((50, 7, 8), dtype=bool)
    right[..., :depth] = np.random.default_rng(seed).random((50, 7, depth)) < 0.5  # levels past depth: never right
    want = (right[..., :depth] * (1 << np.arange(depth - 1, -1, -1))).sum(axis=-1)
    np.testing.assert_array_equal(leaf_code(right, depth), want)
    np.testing.assert_array_equal(leaf_code(right[3, 2], depth), want[3, 2])  # one tree's 8 decisions
