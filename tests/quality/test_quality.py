"""The model on the full data set: quality against the default yardstick, and serving parity on every row.

Regression guards, not goals: the goals (random MAPE 10.5%, temporal 12%) are measured by `make bench`. A guard
sits above the spread of tree seeds (random 10.41-10.50%, temporal 11.61-11.71%) by a margin noise cannot cross,
so a benign library bump cannot fail it but a real regression does."""

import numpy as np
import pytest

from kcprice import card, drift
from kcprice.features import design_matrix

pytestmark = pytest.mark.xdist_group("quality")  # one full-data model, trained on one worker

GUARD = {"random": 10.8, "temporal": 12.0}


def test_beats_default_hgb_on_both_splits(trained):
    m = trained.meta["metrics"]
    for split in ("random", "temporal"):
        assert m[split]["mape"] < m[split]["baseline_mape"] - 0.5, m[split]
        assert m[split]["mape"] <= GUARD[split], m[split]
    assert m["random"]["r2"] > 0.9


def test_numpy_predictor_matches_sklearn_on_every_row(trained, kc_sales):
    ours = trained.predictor.predict_raw(kc_sales.raw)
    theirs = trained.fitted.predict_raw(kc_sales.raw)
    assert ours.shape == (21_613,)
    np.testing.assert_allclose(ours, theirs, rtol=1e-9, atol=0)


def test_single_row_path_equals_batch_path_on_every_row(trained, kc_sales):
    # Many rows sit exactly on a split threshold: one ulp of difference between the one-row path (the API) and the
    # batch path (precompute) would move a house to another leaf and give it two prices.
    predictor = trained.predictor
    batch_x = design_matrix(kc_sales.raw, predictor.grids)
    single_x = np.vstack([design_matrix(kc_sales.raw[i : i + 1], predictor.grids) for i in range(len(kc_sales))])
    np.testing.assert_array_equal(single_x, batch_x)
    batch = predictor.predict_raw(kc_sales.raw)
    single = [predictor.predict_raw(kc_sales.raw[i : i + 1])[0] for i in range(len(kc_sales))]
    np.testing.assert_array_equal(single, batch)


def test_model_card(trained, kc_sales):
    ref = kc_sales.take(np.arange(0, len(kc_sales), 10))
    report = drift.drift_report(trained.meta["reference_distributions"], ref.raw, 0.2)
    files = card.render(trained, ref, report)
    assert {"card.html", "card.json", "residuals.png", "predicted_vs_actual.png", "importance.png"} == set(files)
    assert all(files[f][:4] == b"\x89PNG" for f in files if f.endswith(".png"))
    page = files["card.html"].decode()
    assert trained.meta["version"] in page and page.count("data:image/png;base64,") == 3
    assert "98004" in page  # the per-zipcode error table
    importance = card.permutation_importance(trained.predictor, ref)
    top = list(importance)[:4]
    assert {"lat", "sqft_living", "grade"} & set(top), importance  # location and size dominate


def test_value_ranges_cover_what_they_say_on_held_out_sales(trained):
    """Measured on the random and the temporal split's test sales (4,323 each: the binomial spread of an 80%
    coverage is 0.6 point); the goal is within 2 points of nominal (docs/model.md has the figures), the guard 3."""
    for split in ("random", "temporal"):
        for k, r in trained.meta["metrics"][split]["ranges"].items():
            assert abs(r["coverage"] - float(k) * 100) <= 3.0, (split, k, r["coverage"])
            assert 10 < r["median_relative_width"] < 80, r
    widths = trained.meta["metrics"]["random"]["ranges"]
    assert widths["0.90"]["median_relative_width"] > widths["0.80"]["median_relative_width"]


def test_ranges_adapt_to_the_house_and_the_one_row_path_equals_the_batch(trained, kc_sales):
    predictor = trained.predictor
    batch = predictor.value_raw(kc_sales.raw)
    assert np.isfinite(batch["low"]).all() and np.isfinite(batch["high"]).all()
    assert (batch["low"] < batch["price"]).all() and (batch["price"] < batch["high"]).all()
    width = np.log(batch["high"] / batch["low"])  # the range's width in log space (measured: p90 2x p10)
    assert np.percentile(width, 90) > 1.3 * np.percentile(width, 10)  # not one width for every house
    for i in range(0, len(kc_sales), 997):
        one = predictor.value_raw(kc_sales.raw[i : i + 1])
        for k in ("price", "low", "high", "fsd"):
            assert one[k][0] == batch[k][i], (k, i)
    wide = predictor.value_raw(kc_sales.raw[:50], coverage=0.9)
    assert (wide["low"] < batch["low"][:50]).all() and (wide["high"] > batch["high"][:50]).all()
