"""The evaluation protocol (kcprice.evaluation), quick version (random-1, group-1, temporal) on the full data: the
table `kcprice evaluate --quick` writes, and guards noise cannot trip. The full protocol is `make quality`."""

import json
import math

import numpy as np
import pytest

from kcprice import evaluation

pytestmark = pytest.mark.xdist_group("quality")


def test_group_splits_never_put_one_house_on_both_sides(kc_sales):
    for name in ("group-1", "group-2", "group-3"):
        tr, te = evaluation.split(kc_sales, name)
        assert not set(kc_sales.ids[tr].tolist()) & set(kc_sales.ids[te].tolist()), name
        assert abs(len(te) / len(kc_sales) - 0.2) < 0.01
    tr, te = evaluation.split(kc_sales, "random-1")
    assert set(kc_sales.ids[tr].tolist()) & set(kc_sales.ids[te].tolist())  # the easy split lets them straddle
    tr, te = evaluation.split(kc_sales, "temporal")
    assert kc_sales.day[tr].max() <= kc_sales.day[te].min()
    assert not np.array_equal(evaluation.split(kc_sales, "random-1")[1], evaluation.split(kc_sales, "random-2")[1])


def test_the_yardsticks_location_features_never_see_a_rows_own_price(kc_sales):
    train = kc_sales.take(np.arange(0, len(kc_sales), 4))
    loc = evaluation._Location(train)
    # A row's out-of-fold features come from the other folds: changing its own price cannot move them.
    changed = kc_sales.take(np.arange(0, len(kc_sales), 4))
    changed.price = changed.price.copy()
    changed.price[0] *= 100
    other = evaluation._Location(changed)
    assert other.train_features[0].tolist() == loc.train_features[0].tolist()
    assert other.train_features[1:].tolist() != loc.train_features[1:].tolist()  # it did move others' features


def test_cross_validation_compares_a_parameter_inside_the_rows_given(kc_sales, monkeypatch):
    from kcprice import training

    train = kc_sales.take(np.arange(0, len(kc_sales), 16))  # ~1,350 sales: a second or two per fit
    monkeypatch.setitem(evaluation.LGBM_PARAMS, "n_estimators", 60)
    monkeypatch.setitem(training.PARAMS, "n_trees", 30)
    lgbm = evaluation.cv_compare(train, "num_leaves", [4, 31], folds=2, model="lgbm-location")
    ours = evaluation.cv_compare(train, "depth", [2, 6], folds=2)
    for got in (lgbm, ours):
        assert len(got) == 2 and all(len(v["folds"]) == 2 for v in got.values())
        assert all(5 < v["mape"] < 60 and 0 < v["median_ape"] < v["mape"] for v in got.values())
        assert got[next(iter(got))]["mape"] != got[list(got)[1]]["mape"]  # the parameter reached the model
    with pytest.raises(ValueError, match="unknown model"):
        evaluation.cv_compare(train, "num_leaves", [4], folds=2, model="catboost")


@pytest.fixture(scope="module")
def quick(kc_sales, tmp_path_factory):
    from kcprice.cli import main

    out = tmp_path_factory.mktemp("quality") / "quality.json"
    assert main(["evaluate", "--quick", "--out", str(out)]) == 0
    return json.loads(out.read_text())


def test_the_quick_protocol_writes_every_split_model_and_metric(quick):
    assert set(quick["splits"]) == set(evaluation.QUICK)
    for row in quick["splits"].values():
        assert set(row) == {"kc-price", "hgb-default", "lgbm-location"}
        for m in row.values():
            assert all(math.isfinite(m[k]) for k in evaluation.METRICS)
    assert set(quick["summary"]) == {"random", "group", "temporal"}
    assert set(quick["goals"]) == {"random mape", "group mape", "temporal mape", "temporal median_ape"}


def test_kc_price_is_well_ahead_of_the_default_yardstick_and_its_ranges_cover(quick):
    # Guards, not goals (docs/model.md has the full protocol's table and the goals). Inside the training dates the
    # 80% range covers 79-81% (eight splits); forward in time the random calibration is noisier: 77.4% here, 80-81%
    # with the same split's training rows in date order (tests/quality/test_quality.py), so a wider guard there.
    for name, row in quick["splits"].items():
        assert row["kc-price"]["mape"] < row["hgb-default"]["mape"] - 0.5, name
        assert row["kc-price"]["mape"] < 12.0, name
        low, high = (75.0, 85.0) if name == "temporal" else (77.0, 83.0)
        assert low <= row["kc-price"]["ranges"]["0.80"]["coverage"] <= high, name
