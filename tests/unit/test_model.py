"""Training <-> serving parity and the artifact's contract on a small model (all the data: tests/quality)."""

import io
import json
import subprocess
import sys

import numpy as np
import pytest

from kcprice.errors import ArtifactIntegrityError, IncompatibleArtifactError
from kcprice.features import FEATURE_NAMES, RAW_COLUMNS, LocationGrids, design_matrix, lookup
from kcprice.predictor import Predictor, artifact_bytes, sha256_hex
from kcprice.schema import House
from kcprice.training import Steps, _step_trees


def test_the_served_model_matches_the_fitted_one_on_every_row(small_model, kc_sales):
    ours = small_model.predictor.predict_raw(kc_sales.raw)
    theirs = small_model.fitted.predict_raw(kc_sales.raw)
    assert ours.shape == (21_613,)
    np.testing.assert_allclose(ours, theirs, rtol=1e-9, atol=0)


@pytest.mark.parametrize(("n_thresholds", "depth"), [(1, 6), (40, 6), (63, 6), (64, 6), (69, 6), (200, 6), (20, 3)])
def test_step_functions_export_as_trees_exactly(n_thresholds, depth):
    # The additive part ships as trees: every step (a longer function cut over several trees), ties going left,
    # values beyond either end, and shallow trees.
    rng = np.random.default_rng(n_thresholds)
    thresholds = np.sort(rng.choice(np.arange(1000.0), n_thresholds, replace=False))
    steps = Steps(1, thresholds, rng.normal(size=n_thresholds + 1))
    trees = _step_trees(steps, depth, scale=0.5)
    assert len(trees) == (1 if n_thresholds < 2**depth else -(-(n_thresholds + 1) // (2**depth - 2)))
    predictor = Predictor(
        feature=np.array([t[0] for t in trees])[:, None].repeat(2**depth - 1, axis=1),
        threshold=np.array([t[1] for t in trees]),
        leaf=np.array([t[2] for t in trees]),
        baseline=0.0,
        grids=LocationGrids(np.zeros((1, 2, 2))),
        meta={},
    )
    x = np.zeros((3 * n_thresholds + 2, 3))
    x[:, 1] = np.r_[thresholds, thresholds - 0.5, thresholds + 0.5, -1e9, 1e9]
    np.testing.assert_allclose(predictor.raw_scores(x), 0.5 * steps(x), rtol=0, atol=1e-12)


def test_single_row_path_equals_batch_path(small_model, kc_sales):
    # One row takes Python-float paths (features, lookup, traversal). Many rows sit exactly on a split threshold,
    # so a last-bit difference would move them to another leaf: the paths must agree bit for bit (every row of the
    # data: tests/quality).
    predictor, raw = small_model.predictor, kc_sales.raw[::10]
    batch_x = design_matrix(raw, predictor.grids)
    single_x = np.vstack([design_matrix(raw[i : i + 1], predictor.grids) for i in range(len(raw))])
    np.testing.assert_array_equal(single_x, batch_x)
    batch = predictor.predict_raw(raw)
    single = [predictor.predict_raw(raw[i : i + 1])[0] for i in range(len(raw))]
    np.testing.assert_array_equal(single, batch)


def test_single_point_lookup_equals_batch_lookup(small_model, kc_sales):
    # Points across the grid, its edges and beyond it (the API validates King County; the grid must not care).
    rng = np.random.default_rng(0)
    lat, lon = rng.uniform(46.9, 48.0, 500), rng.uniform(-122.8, -120.9, 500)
    grids = small_model.predictor.grids
    raw = np.repeat(kc_sales.raw[:1], 500, axis=0)
    raw[:, RAW_COLUMNS.index("lat")], raw[:, RAW_COLUMNS.index("long")] = lat, lon
    batch = design_matrix(raw, grids)  # the batch path looks the points up with `lookup`
    np.testing.assert_array_equal(batch[:, -grids.values.shape[0] :], lookup(grids, lat, lon))
    single = np.vstack([design_matrix(raw[i : i + 1], grids) for i in range(500)])  # one row: its own path
    np.testing.assert_array_equal(single, batch)


def test_metadata_describes_the_model(small_model):
    meta = small_model.meta
    assert meta["features"] == list(FEATURE_NAMES) and meta["raw_columns"] == list(RAW_COLUMNS)
    assert meta["data_sha256"] and meta["n_rows"] > 2000
    assert meta["artifact_sha256"] == sha256_hex(small_model.artifact)
    assert {"python", "numpy", "scikit-learn", "kcprice"} <= set(meta["libraries"])
    assert meta["version"].startswith("v") and meta["created_at"]
    embedded = Predictor.from_bytes(small_model.artifact).meta
    assert embedded["version"] == meta["version"]


def test_houses_are_priced_sensibly(small_model, house):
    h = House.model_validate(house)
    (price,) = small_model.predictor.predict_houses([h])
    assert 150_000 < price < 400_000  # sold for $221,900
    bigger = House.model_validate({**house, "sqft_living": 2360, "sqft_above": 2360, "grade": 9})
    assert small_model.predictor.predict_houses([bigger])[0] > price


def test_tampered_artifact_is_refused(small_model):
    blob = bytearray(small_model.artifact)
    blob[-100] ^= 1
    with pytest.raises(ArtifactIntegrityError):
        Predictor.from_bytes(bytes(blob), expected_sha256=small_model.meta["artifact_sha256"])


def test_an_artifact_built_for_other_features_is_refused(small_model):
    # A model trained before a feature change indexes other columns: scoring it would return wrong prices.
    with np.load(io.BytesIO(small_model.artifact), allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    meta = json.loads(str(arrays.pop("meta")))
    meta["features"] = meta["features"][:-8]
    with pytest.raises(IncompatibleArtifactError, match=f"built for {len(FEATURE_NAMES) - 8} features"):
        Predictor.from_bytes(artifact_bytes(arrays, meta))
    assert Predictor.from_bytes(artifact_bytes(arrays, {**meta, "features": list(FEATURE_NAMES)})).version


def test_pickled_arrays_are_refused(small_model):
    with np.load(io.BytesIO(small_model.artifact), allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["leaf"] = np.array([object()], dtype=object)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    with pytest.raises(ValueError, match="allow_pickle"):
        Predictor.from_bytes(buf.getvalue())


def test_non_finite_features_are_refused(small_model):
    x = np.zeros((1, len(FEATURE_NAMES)))
    x[0, 3] = np.nan
    with pytest.raises(ValueError, match="finite"):
        small_model.predictor.raw_scores(x)


def test_serving_imports_neither_sklearn_scipy_nor_pydantic(small_model, tmp_path, kc_sales):
    path = tmp_path / "model.npz"
    path.write_bytes(small_model.artifact)
    code = (
        "import sys, json, numpy as np\n"
        "from kcprice.predictor import Predictor\n"
        f"p = Predictor.load({str(path)!r})\n"
        f"print(json.dumps(p.predict_raw(np.array({kc_sales.raw[:2].tolist()})).tolist()))\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('sklearn', 'scipy', 'joblib', 'pydantic'))\n"
        "assert not bad, bad\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    np.testing.assert_allclose(json.loads(out.stdout), small_model.predictor.predict_raw(kc_sales.raw[:2]), rtol=1e-12)


def test_conformal_quantiles_take_the_finite_sample_order_statistics():
    import numpy as np

    from kcprice.ranges import conformal_quantiles

    scores = np.arange(1, 100, dtype=float)  # n = 99: the 90% range is the 5th and the 95th smallest
    q = conformal_quantiles(scores, (0.8, 0.9))
    assert q["0.90"] == [5.0, 95.0] and q["0.80"] == [10.0, 90.0]
    rng = np.random.default_rng(0)
    cal, new = rng.standard_normal(2000), rng.standard_normal(20000)
    lo, hi = conformal_quantiles(cal, (0.8,))["0.80"]
    assert abs(((new >= lo) & (new <= hi)).mean() - 0.8) < 0.03  # exchangeable scores: the nominal coverage


def test_ranges_with_non_finite_values_are_refused_and_spread_is_bounded():
    import numpy as np
    import pytest

    from kcprice.ranges import Ranges

    info = {"spread_intercept": 0.0, "quantiles": {"0.80": [-1.0, 1.0], "0.90": [-2.0, 2.0]}}
    with pytest.raises(ValueError, match="non-finite"):
        Ranges(np.array([np.nan, 1.0]), info)
    r = Ranges(np.array([1000.0, 0.0]), info)
    assert np.isfinite(r.spread(np.array([[1e6, 0.0], [-1e6, 0.0]]))).all()


def test_a_later_sale_date_carries_the_market_trend_for_at_most_max_days(small_model, kc_sales):
    import copy
    import math

    from kcprice.predictor import trend_term
    from kcprice.training import TREND

    model = small_model.predictor
    trend, day = model.meta["trend"], RAW_COLUMNS.index("day")
    assert trend["from_day"] == model.default_day and trend["max_days"] == TREND["max_days"]
    assert 0 < trend["per_day"] * 365 < 0.5  # the market rose through 2014-15: up, by less than 50% a year
    raw = np.repeat(kc_sales.raw[:1], 4, axis=0)
    raw[:, day] = trend["from_day"] + np.array([0, 30, trend["max_days"], 5 * trend["max_days"]])
    price = model.predict_raw(raw)
    plain = copy.copy(model)  # the same model without the trend (as models from before it)
    plain.meta = {k: v for k, v in model.meta.items() if k != "trend"}
    ratio = price / plain.predict_raw(raw)
    expected = np.exp(trend["per_day"] * np.array([0, 30, trend["max_days"], trend["max_days"]]))
    np.testing.assert_allclose(ratio, expected, rtol=1e-12)  # capped at max_days
    assert math.isclose(ratio[1], math.exp(trend["per_day"] * 30), rel_tol=1e-12)
    assert [model.predict_raw(raw[i : i + 1])[0] for i in range(4)] == price.tolist()
    np.testing.assert_allclose(small_model.fitted.predict_raw(raw), price, rtol=1e-9)
    raw[:, day] = trend["from_day"] - np.array([0, 1, 10, 300])  # inside the training dates: nothing
    assert not trend_term(trend, design_matrix(raw, model.grids)).any()


def test_a_non_finite_trend_is_refused(small_model):
    with np.load(io.BytesIO(small_model.artifact), allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files if k != "meta"}
    meta = json.loads(json.dumps(small_model.meta))
    meta["trend"]["per_day"] = float("nan")
    with pytest.raises(ValueError, match="trend"):
        Predictor.from_bytes(artifact_bytes(arrays, meta))


def test_a_model_from_before_ranges_still_serves_its_price(small_model):
    import io

    import numpy as np

    from kcprice.predictor import Predictor, artifact_bytes

    with np.load(io.BytesIO(small_model.artifact), allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files if k not in ("meta", "spread_coef")}
    meta = {k: v for k, v in small_model.meta.items() if k not in ("ranges", "artifact_sha256")}
    old = Predictor.from_bytes(artifact_bytes(arrays, meta))
    assert old.ranges is None
    new = small_model.predictor
    raw = np.array(
        [
            new.meta["reference_distributions"]
            and [
                3,
                1.0,
                1180,
                5650,
                1.0,
                0,
                0,
                3,
                7,
                1180,
                0,
                1955,
                0,
                98178,
                47.5112,
                -122.257,
                1340,
                5650,
                new.default_day,
            ]
        ]
    )
    got, want = old.value_raw(raw), new.value_raw(raw)
    assert got["price"][0] == want["price"][0] and np.isnan(got["low"][0]) and np.isfinite(want["low"][0])


def test_comparables_are_real_near_similar_sales_never_the_house_itself(small_model, kc_sales):
    import numpy as np

    model = small_model.predictor
    train_ids = set(model.comparables.sales[:, 0].astype(int).tolist())
    i = int(np.flatnonzero(np.isin(kc_sales.ids, list(train_ids)))[0])  # a house the model has seen sell
    raw, house = kc_sales.raw[i], str(int(kc_sales.ids[i]))
    comps = model.comparable_sales(raw, 10, house)
    assert len(comps) == 10 and all(c["id"] != house for c in comps)
    assert {int(c["id"]) for c in comps} <= train_ids
    assert [c["similarity_distance"] for c in comps] == sorted(c["similarity_distance"] for c in comps)
    assert max(c["km"] for c in comps) < 10  # near
    by_id = {(int(s[0]), int(s[1])): s for s in model.comparables.sales}
    from kcprice.fields import EPOCH

    for c in comps:  # each is a real sale: its id, date and price as sold
        import datetime as dt

        day = (dt.date.fromisoformat(c["date"]) - EPOCH).days
        assert by_id[(int(c["id"]), day)][2] == c["price"]
    assert model.comparable_sales(raw, 10, house) == comps  # deterministic
    with_itself = model.comparable_sales(raw, 1)
    assert with_itself[0]["id"] == house and with_itself[0]["km"] == 0.0  # unless the id is not given


def test_the_grid_search_finds_exactly_what_a_scan_of_every_sale_finds(small_model, kc_sales):
    import numpy as np

    from kcprice import comps

    c = small_model.predictor.comparables
    s = {name: c.sales[:, i] for i, name in enumerate(comps.COLUMNS)}
    rng = np.random.default_rng(1)
    for i in rng.choice(len(kc_sales), 40, replace=False):
        raw = kc_sales.raw[i].copy()
        if i % 4 == 0:  # and for houses far from any sale: the search widens until it has enough
            raw[comps._RAW["lat"]] += 0.5
        km = np.hypot(
            (s["lat"] - raw[comps._RAW["lat"]]) * comps._KM_PER_DEG_LAT,
            (s["long"] - raw[comps._RAW["long"]]) * comps._KM_PER_DEG_LONG,
        )
        d2 = (
            km**2
            + ((np.log(s["sqft_living"]) - np.log(raw[comps._RAW["sqft_living"]])) / comps._SIZE) ** 2
            + ((s["grade"] - raw[comps._RAW["grade"]]) / comps._GRADE) ** 2
            + ((s["yr_built"] - raw[comps._RAW["yr_built"]]) / comps._AGE) ** 2
        )
        d2[s["id"] == kc_sales.ids[i]] = np.inf
        want = np.lexsort((s["id"], -s["day"], d2))[:7]
        got = c.find(raw, 7, float(kc_sales.ids[i]))
        assert [g["id"] for g in got] == [str(int(s["id"][k])) for k in want], i


def test_precomputes_batched_search_answers_what_the_api_answers_house_by_house(small_model, kc_sales):
    # precompute finds comparables for the whole inventory by grid cell (find_many); the API, one house at a time.
    # Same houses, same answers: including houses far from any sale (their search widens), a house given with
    # and without its id, and houses off the grid on either side.
    import numpy as np

    from kcprice import comps

    model = small_model.predictor
    rng = np.random.default_rng(7)
    rows = rng.choice(len(kc_sales), 600, replace=False)
    raw = kc_sales.raw[rows].copy()
    raw[::50, comps._RAW["lat"]] += 0.5  # north of every sale
    raw[1::50, comps._RAW["long"]] -= 1.0  # west of the grid
    ids = [str(int(i)) for i in kc_sales.ids[rows]]
    ids[2::25] = [""] * len(ids[2::25])  # no id: the house's own sales may be its comparables
    batch = model.comparable_sales_many(raw, 5, ids)
    one = [model.comparable_sales(raw[k], 5, ids[k]) for k in range(len(raw))]
    assert batch == one
    assert all(len(c) == 5 for c in batch)


def test_a_batch_scored_on_several_threads_equals_one_row_at_a_time(small_model, kc_sales):
    import numpy as np

    from kcprice import predictor as module
    from kcprice.features import design_matrix

    model = small_model.predictor
    x = design_matrix(kc_sales.raw[:5000], model.grids)
    batch = model.raw_scores(x)  # split over the CPUs when there are several
    assert module._cpus() < 2 or 5000 // module._PARALLEL_ROWS >= 2
    from kcprice.predictor import trend_term

    assert model.local is not None  # the local correction (kcprice.local) is part of the score
    local = model.local.correction(x[:, RAW_COLUMNS.index("lat")], x[:, RAW_COLUMNS.index("long")])
    np.testing.assert_array_equal(batch, model._scores(x) + trend_term(model.meta["trend"], x) + local)
    np.testing.assert_array_equal(batch[::250], [model.raw_scores(x[i : i + 1])[0] for i in range(0, 5000, 250)])
    # Sales dated past the training data: the trend term too, one row or a batch
    later = x.copy()
    later[:, RAW_COLUMNS.index("day")] += np.arange(5000) % 400
    batch = model.raw_scores(later)
    assert (trend_term(model.meta["trend"], later) != 0).mean() > 0.3
    np.testing.assert_array_equal(batch[::50], [model.raw_scores(later[i : i + 1])[0] for i in range(0, 5000, 50)])


def test_oblivious_trees_are_read_by_level_with_the_same_values_one_row_or_many(small_model, kc_sales, monkeypatch):
    # kcprice.boosting's trees (every node of a level alike) beside the model's own: read one decision per level,
    # they give what the node-by-node walk gives, and one row gets the same bits as a batch.
    from kcprice import predictor as module
    from kcprice.boosting import ObliviousBoosting
    from kcprice.predictor import Predictor

    m = small_model.predictor
    rows = np.arange(0, len(kc_sales), 5)
    x = design_matrix(kc_sales.raw[rows], m.grids)
    ob = ObliviousBoosting(n_trees=40, depth=m.depth, feature_share=0.3).fit(x, np.log(kc_sales.price[rows]))
    feature, threshold, leaf = ob.perfect_trees()

    def build() -> Predictor:
        return Predictor(
            feature=np.vstack([m.feature, feature]),
            threshold=np.vstack([m.threshold, threshold]),
            leaf=np.vstack([m.leaf, leaf]),
            baseline=m.baseline + ob.baseline,
            grids=m.grids,
            meta={},
        )

    mixed = build()
    assert mixed._oblivious is not None and len(mixed._oblivious[3]) >= 40
    x_all = design_matrix(kc_sales.raw[::3], m.grids)
    batch = mixed._scores(x_all)
    np.testing.assert_array_equal(batch[::97], [mixed._scores(x_all[i : i + 1])[0] for i in range(0, len(x_all), 97)])
    np.testing.assert_allclose(batch, m._scores(x_all) + ob.predict(x_all), rtol=0, atol=1e-9)
    assert mixed._ranks is not None  # a batch compares byte ranks; with too many thresholds, the doubles:
    monkeypatch.setattr(module._Ranks, "of", classmethod(lambda cls, *a: None))
    np.testing.assert_array_equal(build()._scores(x_all), batch)
    n_steps = int((~module.oblivious(m.feature, m.threshold)).sum())  # the model's additive part
    assert n_steps > 0 and mixed._steps is not None and len(mixed._steps[3]) == n_steps
    monkeypatch.setattr(module, "step_trees", lambda f, t: np.zeros(len(f), dtype=bool))  # steps walked
    walked = build()
    assert walked._steps is None and walked._flat[3].size == n_steps
    np.testing.assert_allclose(batch, walked._scores(x_all), rtol=0, atol=1e-12)
    monkeypatch.setattr(module, "oblivious", lambda f, t: np.zeros(len(f), dtype=bool))  # every tree walked
    np.testing.assert_allclose(batch, build()._scores(x_all), rtol=0, atol=1e-12)


def test_the_trees_are_oblivious_and_served_by_level(small_model):
    # kc-price's trees are kcprice.boosting's: the artifact holds them as perfect trees whose levels split alike,
    # and serving reads them one decision per level (the additive steps are walked node by node).
    from kcprice.boosting import oblivious
    from kcprice.training import PARAMS

    m = small_model.predictor
    levels = oblivious(m.feature, m.threshold)
    assert levels[: PARAMS["n_trees"]].all() and not levels[PARAMS["n_trees"] :].any()
    assert m._oblivious is not None and len(m._oblivious[3]) == PARAMS["n_trees"]
    # The additive part's step trees are read as counts of thresholds below the value; no tree is walked.
    assert m._steps is not None and len(m._steps[3]) == (~levels).sum() > 0 and m._flat[3].size == 0
    assert small_model.meta["depth"] == PARAMS["depth"]


def test_trees_of_one_feature_are_read_as_counts_only_when_their_thresholds_ascend(small_model):
    # A tree that splits one feature everywhere is a step function only if its thresholds ascend in order; then a
    # row's leaf is the count of thresholds below its value. Shuffled thresholds must be walked, with ties and
    # +inf padding in either: every row's score is the node-by-node walk's.
    from kcprice.predictor import in_order_ranks, step_trees

    rng = np.random.default_rng(7)
    depth, n_int = 3, 7
    ranks = in_order_ranks(depth)
    thresholds = [np.sort(rng.choice([0.0, 1.0, 2.0, 3.0], n_int)) for _ in range(6)]
    thresholds[1][5:] = np.inf  # a shallow step function, padded
    ordered = np.array([t[ranks] for t in thresholds])  # heap order
    ordered[3:] = ordered[3:][:, ::-1]  # no longer ascending in order (unless all ties)
    feature = np.repeat(np.arange(6) % 3, n_int).reshape(6, n_int)
    leaf = rng.normal(size=(6, n_int + 1))
    m = Predictor(feature, ordered, leaf, 0.5, small_model.predictor.grids, {})
    expect = step_trees(feature, ordered)
    assert expect[:3].all() and not expect[3:].all()
    x = np.zeros((200, len(FEATURE_NAMES)))
    x[:, :3] = rng.choice([-1.0, 0.0, 0.5, 1.0, 2.0, 3.0, 4.0], (200, 3))

    def walk(row: np.ndarray) -> float:
        total = 0.0
        for t in range(6):
            node = 0
            while node < n_int:
                node = 2 * node + 1 + (row[feature[t, node]] > ordered[t, node])
            total += leaf[t, node - n_int]
        return total + 0.5

    want = np.array([walk(r) for r in x])
    np.testing.assert_allclose(m._scores(x), want, rtol=0, atol=1e-12)
    np.testing.assert_allclose([m._scores(r[None])[0] for r in x], want, rtol=0, atol=1e-12)


def test_prepare_builds_what_a_first_explanation_and_batch_would(small_model, kc_sales):
    # For SnapStart's snapshot: after prepare() neither an explanation nor a batch builds anything.
    m = Predictor.from_bytes(small_model.artifact)
    assert m._explainer is None and "_ranks" not in m.__dict__  # nothing at load
    m.prepare()
    tables, ranks = m._explainer, m.__dict__.get("_ranks")
    assert tables is not None and ranks is not None
    fresh = Predictor.from_bytes(small_model.artifact)
    assert m.explain_raw(kc_sales.raw[0]) == fresh.explain_raw(kc_sales.raw[0])
    np.testing.assert_array_equal(m.predict_raw(kc_sales.raw[:50]), fresh.predict_raw(kc_sales.raw[:50]))
    assert m._explainer is tables and m.__dict__["_ranks"] is ranks  # used, not rebuilt
