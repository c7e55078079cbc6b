"""The local correction (kcprice.local): nearby training sales' out-of-fold residuals, by its definition."""

from __future__ import annotations

import io

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kcprice.features import KM_PER_DEGREE, RAW_COLUMNS
from kcprice.fields import BOUNDS
from kcprice.local import PARAMS, RADIUS, LocalResiduals

LAT, LONG = RAW_COLUMNS.index("lat"), RAW_COLUMNS.index("long")


def definition(lat, long, residual, q_lat, q_long, params=PARAMS):
    """The formula of kcprice.local's docstring, over every sale, one house at a time."""
    y, x = lat * KM_PER_DEGREE[0], long * KM_PER_DEGREE[1]
    bw = params["bandwidth_km"]
    out = []
    for qy, qx in zip(q_lat * KM_PER_DEGREE[0], q_long * KM_PER_DEGREE[1], strict=True):
        d2 = (y - qy) ** 2 + (x - qx) ** 2
        w = np.where(d2 <= (RADIUS * bw) ** 2, np.exp(-d2 / (2 * bw * bw)), 0.0)
        out.append(params["weight"] * (w * residual).sum() / (w.sum() + params["prior_weight"]))
    return np.array(out)


@pytest.fixture(scope="module")
def sales_points(kc_sales):
    rng = np.random.default_rng(3)
    rows = rng.choice(len(kc_sales), 4000, replace=False)
    return kc_sales.raw[rows, LAT], kc_sales.raw[rows, LONG], rng.normal(0, 0.2, len(rows))


def _queries(lat, long, rng, n=300):
    """Houses at sales' own spots, a few metres to a few hundred metres off them, and far outside every cell."""
    pick = rng.integers(0, len(lat), n)
    q_lat = lat[pick] + rng.normal(0, 0.002, n) * (np.arange(n) % 3 > 0)
    q_long = long[pick] + rng.normal(0, 0.003, n) * (np.arange(n) % 3 > 0)
    q_lat[:5], q_long[:5] = BOUNDS["lat"][0], BOUNDS["long"][1]  # south-east corner of the county: no sale near
    q_lat[5:10] = lat.max() + 0.003  # just past the northernmost sale: the edge of the grid
    return q_lat, q_long


def test_the_correction_is_the_kernel_mean_of_nearby_residuals(sales_points):
    lat, long, r = sales_points
    local = LocalResiduals(lat, long, r, PARAMS)
    q_lat, q_long = _queries(lat, long, np.random.default_rng(4))
    got = local.correction(q_lat, q_long)
    np.testing.assert_allclose(got, definition(lat, long, r, q_lat, q_long), rtol=0, atol=1e-12)
    assert (got[:5] == 0).all()  # nothing within the radius: no correction
    assert np.abs(got[10:]).max() > 0.01  # and near sales, one


def test_one_house_gets_the_same_bits_as_in_a_batch(sales_points):
    lat, long, r = sales_points
    local = LocalResiduals(lat, long, r, PARAMS)
    q_lat, q_long = _queries(lat, long, np.random.default_rng(5), n=2 * 2048 + 17)  # several batch steps
    batch = local.correction(q_lat, q_long)
    one = [local.correction(q_lat[i : i + 1], q_long[i : i + 1])[0] for i in range(len(q_lat))]
    np.testing.assert_array_equal(batch, one)


@settings(max_examples=200, deadline=None)
@given(
    st.floats(*BOUNDS["lat"][:2]),
    st.floats(*BOUNDS["long"][:2]),
    st.floats(-1e-3, 1e-3),
    st.floats(-1e-3, 1e-3),
)
def test_any_coordinates_of_the_county_get_the_batch_bits(lat0, long0, dlat, dlong):
    # A cluster of sales anywhere in the county, houses on it and beside it: one house or in a batch, the same.
    lat = lat0 + np.array([0.0, dlat, 2 * dlat, 0.001, -0.002])
    long = long0 + np.array([0.0, dlong, -dlong, 0.002, 0.001])
    local = LocalResiduals(lat, long, np.array([0.1, -0.2, 0.05, 0.3, -0.1]), PARAMS)
    q_lat, q_long = np.r_[lat, lat0 + dlong, lat0 + 0.01], np.r_[long, long0 + dlat, long0]
    batch = local.correction(q_lat, q_long)
    assert np.array_equal(batch, [local.correction(q_lat[i : i + 1], q_long[i : i + 1])[0] for i in range(7)])
    np.testing.assert_allclose(batch, definition(lat, long, local.residual, q_lat, q_long), rtol=0, atol=1e-12)
    assert np.isfinite(batch).all()


def test_few_sales_are_shrunk_towards_no_correction():
    # One sale at the house's own spot: weight * r / (1 + prior) - the prior keeps one sale from deciding alone.
    local = LocalResiduals(np.array([47.5]), np.array([-122.2]), np.array([0.4]), PARAMS)
    got = local.correction(np.array([47.5]), np.array([-122.2]))[0]
    assert got == pytest.approx(PARAMS["weight"] * 0.4 / (1 + PARAMS["prior_weight"]), abs=1e-15)


@pytest.mark.parametrize(
    "residual, params",
    [
        (np.array([0.1, np.nan]), PARAMS),
        (np.array([0.1, np.inf]), PARAMS),
        (np.array([0.1]), PARAMS),  # one residual for two sales
        (np.array([0.1, 0.2]), {**PARAMS, "bandwidth_km": 0.0}),
        (np.array([0.1, 0.2]), {**PARAMS, "prior_weight": -1.0}),
        (np.array([0.1, 0.2]), {**PARAMS, "weight": float("nan")}),
        (np.array([0.1, 0.2]), {"bandwidth_km": 0.1}),  # a meta["local"] without its other parameters
        (np.array([0.1, 0.2]), {**PARAMS, "prior_weight": "three"}),
        (np.array([0.1, 0.2]), {**PARAMS, "weight": None}),
    ],
)
def test_non_finite_or_mismatched_residuals_are_refused(residual, params):
    with pytest.raises(ValueError):
        LocalResiduals(np.array([47.5, 47.6]), np.array([-122.2, -122.1]), residual, params)


def test_a_model_serves_its_correction_and_refuses_a_broken_one(small_model, kc_sales):
    from kcprice.predictor import Predictor, artifact_bytes

    model = small_model.predictor
    assert model.local is not None and model.meta["local"]["bandwidth_km"] == PARAMS["bandwidth_km"]
    raw = kc_sales.raw[:200]
    with_it = model.predict_raw(raw)
    model.local, saved = None, model.local
    try:
        without = model.predict_raw(raw)
    finally:
        model.local = saved
    ratio = with_it / without
    # The correction moves values, by at most its weight times the largest residual
    assert (ratio != 1).mean() > 0.5
    assert np.abs(np.log(ratio)).max() <= PARAMS["weight"] * np.abs(model.local.residual).max() + 1e-12

    with np.load(io.BytesIO(small_model.artifact), allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files if k != "meta"}
    for broken in (np.r_[arrays["local_residual"][:-1], np.nan], arrays["local_residual"][:-1]):
        blob = artifact_bytes({**arrays, "local_residual": broken}, model.meta)
        with pytest.raises(ValueError, match=r"local|finite"):
            Predictor.from_bytes(blob)


def test_a_sale_s_residual_comes_from_a_model_fitted_without_its_house(kc_sales, monkeypatch):
    # Houses sold twice: both sales are held out together, so a house's residual never saw the house.
    from kcprice import training

    _, house, count = np.unique(kc_sales.ids, return_inverse=True, return_counts=True)
    repeat = np.flatnonzero(count[house] > 1)
    rows = np.r_[np.arange(0, len(kc_sales), 40), repeat]
    sales = kc_sales.take(rows)
    fitted_on: list[set] = []
    real = training._fit_trees

    def recording(s, params=None):
        fitted_on.append(set(s.ids.tolist()))
        return real(s, params)

    monkeypatch.setattr(training, "_fit_trees", recording)
    r = training.local_residuals(sales)
    assert r is not None and np.isfinite(r).all() and np.median(r) == pytest.approx(0, abs=1e-12)
    assert len(fitted_on) == training.LOCAL_FOLDS
    seen_by_both = set.intersection(*fitted_on)
    assert not seen_by_both  # every house was left out of exactly one fit...
    assert set.union(*fitted_on) == set(sales.ids.tolist())  # ...and is in the other


def test_too_few_sales_for_two_folds_get_no_correction(kc_sales):
    from kcprice import training

    assert training.local_residuals(kc_sales.take(np.arange(2 * training.LOCAL_MIN_SALES - 20))) is None
