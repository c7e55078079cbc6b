"""Training (scikit-learn splines, kcprice.boosting's trees), training side only: serving never imports this.

Model: log(price) = shrink * additive(x) + trees(x). `additive` is a ridge fit of one cubic spline per feature and a
coefficient per zip code, discretised into step functions so that it exports as trees too; oblivious gradient-boosted
trees (kcprice.boosting) fit what it leaves (trained on out-of-fold additive predictions, so they do not learn the
additive part's overfit). The smooth part carries the broad trends (size, grade, age) that boosting
approximates with many small steps; the trees spend their splits on location and interactions.
Location maps used as training features are built out-of-fold too (each row's value comes from maps fitted
without that row), so the trees never see a row's own price through its neighbourhood feature.
"""

from __future__ import annotations

import datetime as dt
import platform
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import sklearn
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import SplineTransformer

import kcprice
from kcprice import comps, drift, explain, ranges
from kcprice.boosting import ObliviousBoosting
from kcprice.dataset import Sales
from kcprice.features import FEATURE_NAMES, RAW_COLUMNS, LocationGrids, design_matrix, fit_location_grids
from kcprice.fields import FIELDS
from kcprice.local import PARAMS as LOCAL
from kcprice.local import LocalResiduals
from kcprice.predictor import Predictor, artifact_bytes, in_order_ranks, sha256_hex, trend_term

PARAMS: dict[str, Any] = dict(
    # The targets are in MAPE, and the point forecast that minimises relative error is not the median: with
    # log-normal noise of spread s it is exp(mu - s^2), the Phi(-s) quantile (s ~ 0.15 here -> ~0.44). So the trees
    # fit a low quantile of log(price) instead of its mean; per leaf, so the step down follows the local spread
    # (median -1.1% vs squared error, 5-95%: -7% to +4%); one global shift could not (best, -1%: CV 11.02 -> 10.99).
    # 5-fold CV inside the random split's training rows (with HistGradientBoosting's trees): squared error 11.02,
    # absolute error (the median) 11.01, quantile 0.48/0.46/0.44/0.42/0.40: 10.96/10.90/10.88/10.87/10.88; 0.42 is
    # the flat middle. A rising market (the temporal split) punishes any step down: 11.46 -> 11.64 there.
    quantile=0.42,
    # Oblivious trees (kcprice.boosting) since 2026-12-02, in place of scikit-learn's HistGradientBoosting (600
    # trees of depth 6, 15% of the features per split). 5-fold CV grouped by house inside the temporal split's
    # training rows (`kcprice evaluate --cv PARAM VALUES`): HGB 10.636; these trees, 2,000 of depth 6 at 0.05:
    # 10.578-10.583 over three seeds; 1,000 of depth 7 at 0.08: 10.588 - the same accuracy with half the
    # comparisons a house, so faster to serve than HGB's walk (docs/model.md); 1,000 of depth 6 at 0.1: 10.662;
    # 600 of depth 8 at 0.1: 10.656. 15% of the features a level, as HGB had them.
    n_trees=1000,
    learning_rate=0.08,
    depth=7,
    l2=3.0,
    feature_share=0.15,
    subsample=0.8,
    random_strength=0.05,
    n_borders=254,
    seed=0,
)
OOF_FOLDS = 5
SEED = 42
# The additive part: spline knots per feature, ridge penalty, steps per feature once discretised (one depth-6 tree
# holds 64), and how much of it goes under the trees. 5-fold CV inside the random split's training rows: MAPE
# 11.2 -> 11.0 with the extra location features; chosen there, not on the test rows.
ADDITIVE: dict[str, Any] = dict(n_knots=8, alpha=1.0, max_steps=64, shrink=0.6)
Log = Callable[[str], None]
# The market's trend, carried past the latest training sale. Trees are flat beyond the last day they saw, so a sale
# dated later was valued at the last day's market. The trend term continues the model's own price index: its
# partial dependence on the sale date (the mean predicted log price of the training houses, each re-dated to the
# last day and to `window_days` before it) per day, for at most `max_days` (window and cap set, not tuned).
# The additive part's date curve alone (x its weight) was used first: it misses what the trees carry of the date.
# Chosen inside training rows: a model fitted on the earlier 90% / 80% of the temporal split's training sales,
# valued forward on the rest: MAPE 12.559 -> 12.532 / 12.064 -> 12.056, median APE 8.72 -> 8.66 / 8.17 -> 8.11.
# Then the temporal split itself (one run): MAPE 11.43 -> 11.36%, median APE 8.35 -> 8.19% (no term at all: 11.62,
# 8.67); splits whose test sales lie inside the training dates are unchanged (the term is 0 there).
TREND: dict[str, float] = dict(window_days=90.0, max_days=180.0)
TREND_HOUSES = 2000
_DAY = FEATURE_NAMES.index("day")
_LAT, _LONG = FEATURE_NAMES.index("lat"), FEATURE_NAMES.index("long")


def metrics(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    """Accuracy as valuation users compare it: mean and median absolute percentage error and the share of sales
    valued within 5, 10 and 20% of their price (percent), besides R2, RMSE and MAE in dollars."""
    err = p - y
    ape = np.abs(err) / y * 100
    return {
        "r2": float(1 - np.sum(err**2) / np.sum((y - y.mean()) ** 2)),
        "rmse": float(np.sqrt(np.mean(err**2))),
        "mae": float(np.mean(np.abs(err))),
        "mape": float(np.mean(ape)),
        "median_ape": float(np.median(ape)),
        "within_5": float(np.mean(ape <= 5) * 100),
        "within_10": float(np.mean(ape <= 10) * 100),
        "within_20": float(np.mean(ape <= 20) * 100),
        "n": len(y),
    }


@dataclass
class Steps:
    """A step function of one feature: value[i] where thresholds[i-1] < x <= thresholds[i] (sklearn's convention)."""

    feature: int
    thresholds: np.ndarray
    values: np.ndarray

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.values[np.searchsorted(self.thresholds, x[:, self.feature], side="left")]


@dataclass
class Additive:
    intercept: float
    steps: list[Steps]

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.intercept + sum((s(x) for s in self.steps), np.zeros(len(x)))


class _Basis:
    """Cubic B-splines per numeric feature plus zip code indicators; knots from all training rows (no target)."""

    def __init__(self, x: np.ndarray, n_knots: int) -> None:
        self.zip = FEATURE_NAMES.index("zipcode")
        self.cols = [p for p in range(x.shape[1]) if p != self.zip and np.ptp(x[:, p]) > 0]
        self.splines = [SplineTransformer(n_knots=n_knots).fit(x[:, [p]]) for p in self.cols]
        self.zips = np.unique(x[:, self.zip])

    def __call__(self, x: np.ndarray) -> np.ndarray:
        widths = [sp.n_features_out_ for sp in self.splines]
        out = np.empty((len(x), sum(widths) + len(self.zips)))  # filled in place: no 500-column hstack
        o = 0
        for p, sp, w in zip(self.cols, self.splines, widths, strict=True):
            out[:, o : o + w] = sp.transform(x[:, [p]])
            o += w
        np.equal(x[:, [self.zip]], self.zips, out=out[:, o:], casting="unsafe")
        return out

    def discretise(self, x: np.ndarray, b: np.ndarray, coef: np.ndarray, intercept: float, max_steps: int):
        """Each spline -> at most max_steps steps (b: this basis evaluated at x, the training rows)."""
        steps, o = [], 0
        for p, sp in zip(self.cols, self.splines, strict=True):
            part = slice(o, o + sp.n_features_out_)
            f = b[:, part] @ coef[part]
            o = part.stop
            v = np.unique(x[:, p])
            if len(v) <= max_steps:
                thr = (v[:-1] + v[1:]) / 2
            else:
                thr = np.unique(np.quantile(x[:, p], np.linspace(0, 1, max_steps + 1)[1:-1]))
            # Each step's value: the spline's mean over the training rows in it (at its edge if it holds none).
            idx = np.searchsorted(thr, x[:, p], side="left")
            n = np.bincount(idx, minlength=len(thr) + 1)
            edge = sp.transform(np.r_[thr, thr[-1:]][:, None]) @ coef[part]
            val = np.where(n > 0, np.bincount(idx, weights=f, minlength=len(thr) + 1) / np.maximum(n, 1), edge)
            steps.append(Steps(p, thr, val))
        # Zip codes: one step per training zip code; an unseen one takes a numerically adjacent code's value.
        steps.append(Steps(self.zip, (self.zips[:-1] + self.zips[1:]) / 2, coef[o:]))
        return Additive(intercept, steps)


def _ridge(stats: Sequence[Any], alpha: float):
    """Ridge with an unpenalised intercept from sufficient statistics (B'B, B'y, sum of B, sum of y, n): centring
    is algebra."""
    gram, by, b_sum, y_sum, n = stats
    mb, my = b_sum / n, y_sum / n
    centred = gram - n * np.outer(mb, mb) + alpha * np.eye(len(mb))
    coef = np.linalg.solve(centred, by - n * mb * my)
    return coef, float(my - mb @ coef)


def fit_additive(x: np.ndarray, y: np.ndarray) -> tuple[Additive, np.ndarray]:
    """The additive model on all rows, and its out-of-fold predictions for the trees to train on. One pass over
    the basis per fold collects its B'B; each fold's training statistics are then the totals minus its own."""
    basis = _Basis(x, ADDITIVE["n_knots"])
    b = basis(x)
    folds = np.random.default_rng(SEED + 1).integers(0, OOF_FOLDS, len(x))
    parts = [(b[folds == k], y[folds == k]) for k in range(OOF_FOLDS)]
    stats = [(bk.T @ bk, bk.T @ yk, bk.sum(axis=0), float(yk.sum()), len(yk)) for bk, yk in parts]
    total = [sum(column) for column in zip(*stats, strict=True)]
    oof = np.empty(len(x))
    for k, (bk, _) in enumerate(parts):
        coef, intercept = _ridge([t - s for t, s in zip(total, stats[k], strict=True)], ADDITIVE["alpha"])
        oof[folds == k] = bk @ coef + intercept
    coef, intercept = _ridge(total, ADDITIVE["alpha"])
    return basis.discretise(x, b, coef, intercept, ADDITIVE["max_steps"]), oof


def make_estimator(params: dict[str, Any] | None = None) -> ObliviousBoosting:
    """The trees' learner for these parameters (PARAMS by default)."""
    return ObliviousBoosting(**(params or PARAMS))


@dataclass
class Fitted:
    estimator: ObliviousBoosting
    additive: Additive
    shrink: float  # the additive part's weight, as fitted: predict and export read it here
    grids: LocationGrids
    train_x: np.ndarray | None = None  # the features it was fitted on (the explanations' covers come from them)
    trend: dict[str, float] | None = None  # market_trend(): the sale-date trend past the training data
    local: LocalResiduals | None = None  # its errors on nearby sales (kcprice.local); None: too few sales

    def predict_log(self, x: np.ndarray) -> np.ndarray:
        out = self.estimator.predict(x) + self.shrink * self.additive.predict(x)
        if self.trend:
            out = out + trend_term(self.trend, x)
        return out + self.local.correction(x[:, _LAT], x[:, _LONG]) if self.local is not None else out

    def predict_raw(self, raw: np.ndarray) -> np.ndarray:
        return np.exp(self.predict_log(design_matrix(raw, self.grids)))


def _oof_features(sales: Sales) -> np.ndarray:
    folds = np.random.default_rng(SEED).integers(0, OOF_FOLDS, len(sales))
    x = np.empty((len(sales), len(FEATURE_NAMES)))
    for k in range(OOF_FOLDS):
        grids = fit_location_grids(sales.raw[folds != k], sales.price[folds != k])
        x[folds == k] = design_matrix(sales.raw[folds == k], grids)
    return x


def market_trend(predict_log: Callable[[np.ndarray], np.ndarray], x: np.ndarray) -> dict[str, float]:
    """The trend term's parameters (TREND) from the model's partial dependence on the sale date over the training
    rows x (design matrix): log price per day after their latest sale date, for at most max_days."""
    last_day = float(x[:, _DAY].max())
    window = TREND["window_days"]
    # A fixed sample of the houses: the mean over all of them cost two predictions of the whole training set per
    # fit (retrain 24 -> 34 s); 2,000 give the slope to ~1% (its standard error over the houses).
    rows = np.sort(np.random.default_rng(SEED + 4).permutation(len(x))[:TREND_HOUSES])
    then, now = x[rows], x[rows]
    then[:, _DAY], now[:, _DAY] = last_day - window, last_day
    per_day = float(np.mean(predict_log(now) - predict_log(then)) / window)
    return {"per_day": per_day, "from_day": last_day, "max_days": TREND["max_days"]}


def fit(sales: Sales, params: dict[str, Any] | None = None) -> Fitted:
    """The model: trees on every sale, corrected by nearby sales' out-of-fold residuals (kcprice.local)."""
    model = _fit_trees(sales, params)
    if (r := local_residuals(sales, params)) is not None:
        model.local = LocalResiduals(sales.raw[:, _LAT], sales.raw[:, _LONG], r, LOCAL)
    return model


def _fit_trees(sales: Sales, params: dict[str, Any] | None = None) -> Fitted:
    x, y = _oof_features(sales), np.log(sales.price)
    additive, oof = fit_additive(x, y)
    shrink = ADDITIVE["shrink"]
    est = make_estimator(params).fit(x, y - shrink * oof)
    model = Fitted(est, additive, shrink, fit_location_grids(sales.raw, sales.price), x)
    model.trend = market_trend(model.predict_log, x)  # (no trend yet: inside the training dates it is 0 anyway)
    return model


# The local correction's residuals come from two folds, fitted with a quarter of the trees at a higher rate: in the
# CV that chose it (docs/model.md) two, three and five folds gave the same MAPE (10.525 / 10.523 / 10.522%), and
# so did these cheaper trees (10.525; 500 at 0.15: 10.530) - retrain 77 s with full fits, past its 60.
LOCAL_FOLDS = 2
LOCAL_TREES = dict(n_trees=250, learning_rate=0.25)
LOCAL_MIN_SALES = 50  # per fold: fewer, and a fit on the rest says little about them (tiny test data sets)


def local_residuals(sales: Sales, params: dict[str, Any] | None = None) -> np.ndarray | None:
    """Each sale's out-of-fold log residual (kcprice.local), folds grouped by house: a house sold twice is valued
    by a model fitted without either sale. Centred on their median: the trees' 0.42 quantile steps every value
    down on purpose, and the correction is for what differs locally. None: too few sales."""
    _, house = np.unique(sales.ids, return_inverse=True)
    fold = np.random.default_rng(SEED + 5).integers(0, LOCAL_FOLDS, house.max() + 1)[house]
    if np.bincount(fold, minlength=LOCAL_FOLDS).min() < LOCAL_MIN_SALES:
        return None
    oof = np.empty(len(sales))
    for k in range(LOCAL_FOLDS):
        held = fold == k
        model = _fit_trees(sales.take(np.flatnonzero(~held)), {**(params or PARAMS), **LOCAL_TREES})
        oof[held] = model.predict_log(design_matrix(sales.raw[held], model.grids))
    r = np.log(sales.price) - oof
    return r - np.median(r)


# Ranges: a random share of the training sales calibrates them (kcprice.ranges), exchangeable with the sales to
# value, as split conformal assumes. The latest 20% by date was tried first (to mimic valuing forward in time): it
# builds the market's drift into the residuals and the random split's 80% range covered 65.2%; a random share gives
# 80.2% (random split) and 80.9% (temporal split) - docs/model.md. Forward in time this is noisy: the same temporal
# split with its training rows in another order covered 76-77%. Scaling the quantiles for later-dated sales by what
# the latest 20% of the training sales needed (a third fit) over-covered instead, 83-84%: further from nominal on
# average, so it was tried and not kept.
RANGE_CALIBRATION_SHARE = 0.2


def fit_ranges(sales: Sales, params: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
    """Split-conformal calibration: a model fitted on the other sales, residuals on a random share; half fit the
    spread model, half give the quantiles. -> (spread coefficients, meta["ranges"])."""
    order = np.random.default_rng(SEED + 3).permutation(len(sales))
    cut = int(len(sales) * (1 - RANGE_CALIBRATION_SHARE))
    model = fit(sales.take(order[:cut]), params)
    cal = sales.take(order[cut:])
    x = design_matrix(cal.raw, model.grids)
    r = np.log(cal.price) - model.predict_log(x)
    half = np.random.default_rng(SEED + 2).permutation(len(cal)) % 2 == 0
    coef, intercept = ranges.fit_spread(x[half], r[half])
    spread = ranges.spread(x[~half], coef, intercept)
    info = {
        "method": "split conformal, spread-scaled residuals (kcprice.ranges)",
        "calibration": f"a random {RANGE_CALIBRATION_SHARE:.0%} of the training sales",
        "calibration_rows": int((~half).sum()),
        "spread_rows": int(half.sum()),
        "spread_intercept": intercept,
        "quantiles": ranges.conformal_quantiles(r[~half] / spread),
    }
    return coef, info


def range_bounds(model: Fitted, coef: np.ndarray, info: dict[str, Any], raw: np.ndarray) -> dict:
    """value and {coverage key: (low, high)} for raw rows, as the serving code computes them."""
    x = design_matrix(raw, model.grids)
    log_value = model.predict_log(x)
    r = ranges.Ranges(coef, info)
    spread = r.spread(x)
    return {"value": np.exp(log_value), "bounds": {k: r.bounds(log_value, spread, float(k)) for k in r.quantiles}}


def fit_baseline(sales: Sales) -> Callable[[np.ndarray], np.ndarray]:
    """The yardstick from the issue: default HGB on log(price) over the 18 house fields (no sale date)."""
    n = len(FIELDS)
    est = HistGradientBoostingRegressor(random_state=0).fit(sales.raw[:, :n], np.log(sales.price))
    return lambda raw: np.exp(est.predict(raw[:, :n]))


def splits(sales: Sales) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """(a) random 80/20 with seed 42; (b) temporal: the latest 20% of sales by date held out."""
    idx = np.arange(len(sales))
    random_tr, random_te = train_test_split(idx, test_size=0.2, random_state=SEED)
    order = np.argsort(sales.day, kind="stable")
    cut = int(len(sales) * 0.8)
    return {"random": (random_tr, random_te), "temporal": (order[:cut], order[cut:])}


def evaluate(sales: Sales, with_baseline: bool = True, log: Log = lambda _: None) -> dict[str, dict]:
    out: dict[str, dict] = {}
    for name, (tr, te) in splits(sales).items():
        t0 = time.perf_counter()
        model = fit(sales.take(tr))
        out[name] = metrics(sales.price[te], model.predict_raw(sales.raw[te]))
        coef, info = fit_ranges(sales.take(tr))
        got = range_bounds(model, coef, info, sales.raw[te])
        out[name]["ranges"] = ranges.coverage_report(sales.price[te], got["value"], got["bounds"])
        if with_baseline:
            out[name]["baseline_mape"] = metrics(sales.price[te], fit_baseline(sales.take(tr))(sales.raw[te]))["mape"]
        m, secs = out[name], time.perf_counter() - t0
        cover = "  ".join(f"{float(k):.0%} range covers {v['coverage']:.1f}%" for k, v in m["ranges"].items())
        log(
            f"  {name:8s} split: MAPE {m['mape']:.2f}%  median APE {m['median_ape']:.2f}%  within 10% "
            f"{m['within_10']:.1f}%  R2 {m['r2']:.4f}  {cover}  ({secs:.1f}s)"
        )
    return out


def _step_trees(steps: Steps, depth: int, scale: float) -> list[tuple[int, np.ndarray, np.ndarray]]:
    """A step function as perfect binary search trees of the given depth: (feature, heap-ordered thresholds, leaves).
    A tree holds 2**depth steps; a longer function is cut into trees that are 0 outside their own range."""
    thr, val = steps.thresholds, steps.values * scale
    m, n_int = len(thr), 2**depth - 1
    size = m + 1 if m + 1 <= n_int + 1 else n_int - 1  # a cut tree spends two leaves on its zero outsides
    heap_order, out = in_order_ranks(depth), []
    for a in range(0, m + 1, size):
        b = min(a + size, m + 1) - 1  # last step in this tree
        t = [*thr[a - 1 : a]] * (a > 0) + [*thr[a:b]] + [*thr[b : b + 1]] * (b < m)
        v = [0.0] * (a > 0) + [*val[a : b + 1]] + [0.0] * (b < m)
        sorted_thr = np.full(n_int, np.inf)  # padding: +inf never sends a row right
        sorted_thr[: len(t)] = t
        leaves = np.full(n_int + 1, v[-1])
        leaves[: len(v)] = v
        out.append((steps.feature, sorted_thr[heap_order], leaves))
    return out


def export(model: Fitted) -> dict[str, np.ndarray]:
    """The trees + the additive steps -> perfect binary trees of depth D in flat arrays (see kcprice.predictor)."""
    est = model.estimator
    shrink = model.shrink
    feature, threshold, leaf = est.perfect_trees()  # one split per level
    steps = [tree for s in model.additive.steps for tree in _step_trees(s, est.depth, shrink)]
    return {
        "feature": np.vstack([feature, [np.full(feature.shape[1], f) for f, _, _ in steps]]).astype(np.int32),
        "threshold": np.vstack([threshold, [t for _, t, _ in steps]]),
        "leaf": np.vstack([leaf, [v for _, _, v in steps]]),
        "baseline": np.array(est.baseline + shrink * model.additive.intercept),
        "grids": model.grids.values,
    }


def new_version(data_sha256: str, now: dt.datetime | None = None) -> str:
    now = now or dt.datetime.now(dt.UTC)
    return f"v{now:%Y%m%d-%H%M%S}-{data_sha256[:8]}"


@dataclass
class TrainResult:
    artifact: bytes
    meta: dict[str, Any]
    predictor: Predictor
    fitted: Fitted


def train(
    sales: Sales,
    evaluate_splits: bool = True,
    with_baseline: bool = True,
    log: Log = lambda _: None,
    extra_meta: dict[str, Any] | None = None,
) -> TrainResult:
    """Evaluate on both splits, fit on everything, export. Returns the artifact bytes and its metadata."""
    t0 = time.perf_counter()
    log(f"training on {len(sales):,} sales (data sha256 {sales.sha256[:12]})")
    split_metrics = evaluate(sales, with_baseline=with_baseline, log=log) if evaluate_splits else {}
    # The model and the ranges' calibration model on two threads: the fits are single-threaded numpy, whose loops
    # release the GIL (measured 1.29x on two cores; retrain's Lambda has 4 GB, over two vCPUs).
    with ThreadPoolExecutor(2) as pool:
        ranged = pool.submit(fit_ranges, sales)
        fitted = fit(sales)
        arrays = export(fitted)
        arrays["spread_coef"], range_info = ranged.result()
    arrays["comps"] = comps.table(sales.ids, sales.raw, sales.price)  # the comparable sales it can show
    if fitted.local is not None:  # their residuals, row for row: the local correction's (kcprice.local)
        arrays["local_residual"] = fitted.local.residual
    # How many training sales reach each node: the explanations' expectations (kcprice.explain)
    assert fitted.train_x is not None
    arrays["cover"] = explain.node_counts(arrays["feature"], arrays["threshold"], fitted.train_x).astype(np.float32)
    meta = {
        "version": new_version(sales.sha256),
        "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "raw_columns": list(RAW_COLUMNS),
        "features": list(FEATURE_NAMES),
        "target": "log(price)",
        "model": "additive splines (ridge, as step functions) + oblivious gradient-boosted trees (kcprice.boosting, "
        f"quantile {PARAMS['quantile']} loss) on the rest, corrected by nearby sales' out-of-fold residuals "
        "(kcprice.local)",
        "params": {k: v for k, v in PARAMS.items()},
        "additive": dict(ADDITIVE),
        "n_trees": int(arrays["leaf"].shape[0]),
        "depth": int(np.log2(arrays["leaf"].shape[1])),
        "metrics": split_metrics,
        "ranges": range_info,
        "data_sha256": sales.sha256,
        "n_rows": len(sales),
        "reference_day": float(sales.day.max()),
        "trend": fitted.trend,
        "local": {**fitted.local.params, "folds": LOCAL_FOLDS, **LOCAL_TREES} if fitted.local is not None else None,
        "reference_distributions": drift.reference(sales.raw),
        "libraries": {
            "python": platform.python_version(),
            "numpy": np.__version__,
            "scikit-learn": sklearn.__version__,
            "kcprice": kcprice.__version__,
        },
        **(extra_meta or {}),
    }
    blob = artifact_bytes(arrays, meta)
    meta["artifact_sha256"] = sha256_hex(blob)
    log(
        f"model {meta['version']}: {meta['n_trees']} trees of depth {meta['depth']}, "
        f"{len(blob) / 1e6:.1f} MB, {time.perf_counter() - t0:.1f}s"
    )
    return TrainResult(blob, meta, Predictor.from_bytes(blob), fitted)
