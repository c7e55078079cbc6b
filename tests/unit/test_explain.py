"""Reasons: exact group Shapley values of the trees (kcprice.explain), checked against the definition."""

import itertools
import math

import numpy as np
import pytest

from kcprice.explain import FEATURE_GROUP, GROUP_NAMES, Explainer
from kcprice.features import RAW_COLUMNS, design_matrix


def _coalition_value(feature, threshold, leaf, cover, x, groups: set[int]) -> float:
    """E[f(x_S, X_rest)] by the definition: at a split of a group in S follow the house, elsewhere both ways
    weighted by the training sales (cover)."""
    n_int = threshold.shape[1]
    total = 0.0
    for t in range(threshold.shape[0]):

        def walk(pos: int, w: float, t: int = t) -> float:
            if pos >= n_int:
                return w * leaf[t, pos - n_int]
            left, right = 2 * pos + 1, 2 * pos + 2
            if not np.isfinite(threshold[t, pos]):
                return walk(left, w)
            if FEATURE_GROUP[feature[t, pos]] in groups:
                return walk(right if x[feature[t, pos]] > threshold[t, pos] else left, w)
            c = cover[t, pos]
            return sum(walk(child, w * cover[t, child] / c) for child in (left, right) if cover[t, child] > 0)

        total += walk(0, 1.0)
    return total


def _shapley_by_definition(feature, threshold, leaf, cover, x) -> np.ndarray:
    n = len(GROUP_NAMES)
    value = {
        frozenset(s): _coalition_value(feature, threshold, leaf, cover, x, set(s))
        for r in range(n + 1)
        for s in itertools.combinations(range(n), r)
    }
    phi = np.zeros(n)
    for j in range(n):
        for s, v in value.items():
            if j not in s:
                w = math.factorial(len(s)) * math.factorial(n - len(s) - 1) / math.factorial(n)
                phi[j] += w * (value[s | {j}] - v)
    return phi


@pytest.mark.parametrize("trees", [slice(0, 25), slice(-45, None)])  # boosted trees; the additive step trees
def test_contributions_are_the_shapley_values_of_the_groups(small_model, kc_sales, trees):
    m = small_model.predictor
    feature, threshold, leaf, cover = (
        m.feature[trees],
        m.threshold[trees],
        m.leaf[trees],
        m._cover[trees].astype(np.float64),
    )
    explainer = Explainer(feature, threshold, leaf, cover)
    for i in (0, 1234, 20000):
        x = design_matrix(kc_sales.raw[i : i + 1], m.grids)[0]
        np.testing.assert_allclose(
            explainer.explain(x), _shapley_by_definition(feature, threshold, leaf, cover, x), rtol=0, atol=1e-12
        )


def test_reasons_add_up_to_the_log_value_for_every_house(small_model, kc_sales):
    m = small_model.predictor
    day = RAW_COLUMNS.index("day")
    for i in range(0, len(kc_sales), 431):
        raw = kc_sales.raw[i].copy()
        if i % 2:  # dated after every training sale: the market's trend is the sale date's too
            raw[day] = m.meta["trend"]["from_day"] + i % 200
        why = m.explain_raw(raw)
        log_value = m.raw_scores(design_matrix(raw[None, :], m.grids))[0]
        assert abs(why["baseline"] + sum(why["contributions"].values()) - log_value) < 1e-9
        assert set(why["contributions"]) == set(GROUP_NAMES)
    assert 12 < why["baseline"] < 14  # a typical King County log price (~$400k)


@pytest.fixture(scope="module")
def oblivious_trees(small_model, kc_sales):
    """Oblivious trees (kcprice.boosting) on the model's features, as an artifact holds them, with their covers."""
    from kcprice.boosting import ObliviousBoosting
    from kcprice.explain import node_counts

    rows = np.arange(0, len(kc_sales), 7)
    x = design_matrix(kc_sales.raw[rows], small_model.predictor.grids)
    m = ObliviousBoosting(n_trees=12, depth=4, feature_share=0.5).fit(x, np.log(kc_sales.price[rows]))
    feature, threshold, leaf = m.perfect_trees()
    return feature, threshold, leaf, node_counts(feature, threshold, x), m


def test_oblivious_trees_are_explained_exactly_one_row_a_tree(oblivious_trees, kc_sales, small_model):
    from kcprice.boosting import oblivious

    feature, threshold, leaf, cover, _ = oblivious_trees
    assert oblivious(feature, threshold).all()
    explainer = Explainer(feature, threshold, leaf, cover)
    assert len(explainer._rest.table) == 0 and explainer._codes.shape == (12 * 16, len(GROUP_NAMES))
    for i in (0, 1234, 20000):
        x = design_matrix(kc_sales.raw[i : i + 1], small_model.predictor.grids)[0]
        np.testing.assert_allclose(
            explainer.explain(x), _shapley_by_definition(feature, threshold, leaf, cover, x), rtol=0, atol=1e-12
        )


def test_a_mix_of_oblivious_and_other_trees_is_explained_exactly(oblivious_trees, kc_sales, small_model):
    # The model's additive step trees (walked leaf by leaf) with the depth-4 oblivious trees padded to the model's
    # depth as an artifact would pad them (always left below depth 4)
    m = small_model.predictor
    feature, threshold, leaf, _, _ = oblivious_trees
    n_int = m.threshold.shape[1]
    pf, pt = np.zeros((len(feature), n_int), dtype=feature.dtype), np.full((len(feature), n_int), np.inf)
    pl = np.zeros((len(feature), n_int + 1))
    for pos in range(15):  # heap positions of the depth-4 internal nodes are the same in a deeper heap
        pf[:, pos], pt[:, pos] = feature[:, pos], threshold[:, pos]
    # a depth-4 leaf j continues always left to the model's depth: its leaf index is j shifted by the extra levels
    pl[:, np.arange(16) << (m.depth - 4)] = leaf
    both = (
        np.vstack([m.feature[-20:], pf]),
        np.vstack([m.threshold[-20:], pt]),
        np.vstack([m.leaf[-20:], pl]),
    )
    x_all = design_matrix(kc_sales.raw[::7], m.grids)
    from kcprice.explain import node_counts

    covers = node_counts(*both[:2], x_all)
    explainer = Explainer(*both, covers)
    assert len(explainer._ob_rows) >= 12 and len(explainer._rest.table)  # both kinds
    for i in (0, 20000):
        x = design_matrix(kc_sales.raw[i : i + 1], m.grids)[0]
        np.testing.assert_allclose(explainer.explain(x), _shapley_by_definition(*both, covers, x), rtol=0, atol=1e-12)


def test_oblivious_trees_covers_are_the_node_by_node_counts(oblivious_trees, kc_sales, small_model, monkeypatch):
    from kcprice import explain
    from kcprice.explain import node_counts

    feature, threshold, _, cover, _ = oblivious_trees  # counted by leaf codes
    x = design_matrix(kc_sales.raw[np.arange(0, len(kc_sales), 7)], small_model.predictor.grids)
    monkeypatch.setattr(explain, "oblivious", lambda f, t: np.zeros(len(f), dtype=bool))  # node by node
    np.testing.assert_array_equal(cover, node_counts(feature, threshold, x))
    assert cover[:, 0].min() == len(x)  # every row reaches every root
