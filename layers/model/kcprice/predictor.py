"""numpy-only serving: load a self-describing artifact and price houses. Never imports scikit-learn or scipy.

Artifact = one .npz (loaded with allow_pickle=False, so it can carry no code) holding:
  feature (T, 2**D - 1) int, threshold (T, 2**D - 1) float64, leaf (T, 2**D) float64, baseline (),
  grids (scales, ny, nx) float64, meta () unicode JSON; optionally spread_coef (n_features,) float64 with
  meta["ranges"] (kcprice.ranges: value ranges and confidence), comps (n_sales, 8) float64 (kcprice.comps),
  cover (T, 2 * (2**D - 1) + 1) float32: training sales per node (kcprice.explain); meta["trend"]: the market's
  trend carried past the latest training sale (trend_term; absent in older models: none); local_residual (n_sales,)
  float64 with meta["local"]: the comps sales' out-of-fold log residuals, for the local correction (kcprice.local;
  absent in older models: none).
Trees are stored as perfect binary trees of depth D: a leaf shallower than D is padded with "always left"
splits (threshold +inf), so every row takes exactly D vectorised steps through every tree at once. Two kinds of
tree are read faster, with the same decisions: oblivious trees (one split per level) by their D decisions as a
binary number, step trees (one feature, thresholds ascending in order) by a count of thresholds below the value.
A row goes right when x > threshold, which is scikit-learn's `x <= threshold -> left` for finite x.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from kcprice.boosting import oblivious
from kcprice.comps import COLUMNS as COMPS_COLUMNS
from kcprice.comps import Comparables
from kcprice.explain import GROUP_NAMES, Explainer, leaf_code, levels_of
from kcprice.features import FEATURE_NAMES, MAP_NAMES, RAW_COLUMNS, LocationGrids, design_matrix
from kcprice.local import LocalResiduals
from kcprice.ranges import DEFAULT_COVERAGE, Ranges

_ARRAYS = ("feature", "threshold", "leaf", "baseline", "grids", "meta")
_CHUNK = 128  # rows per traversal block: keeps the (rows x trees) index arrays inside the CPU cache (21,613 rows
# on 2 threads, interleaved: 128 rows 0.52 s, 512 rows 0.61-0.77 s, 1,024 rows 0.9 s)


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass
class Predictor:
    feature: np.ndarray
    threshold: np.ndarray
    leaf: np.ndarray
    baseline: float
    grids: LocationGrids
    meta: dict[str, Any]
    _flat: tuple = field(init=False, repr=False)
    ranges: Ranges | None = field(default=None, init=False, repr=False)  # None: a model from before ranges
    comparables: Comparables | None = field(default=None, init=False, repr=False)
    local: LocalResiduals | None = field(default=None, init=False, repr=False)  # None: a model from before it
    _cover: np.ndarray | None = field(default=None, init=False, repr=False)
    _explainer: Explainer | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        n_trees, n_internal = self.threshold.shape
        self.depth = int(np.log2(n_internal + 1))
        if 2**self.depth - 1 != n_internal or self.leaf.shape != (n_trees, n_internal + 1):
            raise ValueError("artifact trees are not perfect binary trees")
        # One flat node space: node k (internal or leaf) of tree t lives at t * m + k, m = 2 * n_internal + 1, in
        # heap order, so a node's left child is t * m + 2k + 1 = 2 * node + 1 - t * m: node = 2 * node + shift +
        # (x[feature] > threshold), shift = 1 - t * m. A node's threshold and feature sit side by side (one 16-byte
        # record): a request's other work evicts the trees from the CPU caches, and a step then waits on memory -
        # one line per node instead of three (three arrays, one with the left child). Measured, one house, caches
        # flushed between calls: 271 -> 199 us; warm caches: the same; 4,096 rows on one thread: 0.184 -> 0.157 s.
        # Oblivious trees (kcprice.boosting: every node of a level splits alike) are read level by level instead:
        # one decision per level, the leaf is the decisions as a binary number - D gathers for all of them at once.
        levels = oblivious(self.feature, self.threshold)
        ob = np.flatnonzero(levels)
        self._oblivious = (
            (
                *levels_of(self.feature[ob], self.threshold[ob]),
                np.ascontiguousarray(self.leaf[ob]).ravel(),
                np.arange(len(ob), dtype=np.intp) * (n_internal + 1),
            )
            if len(ob)
            else None
        )
        # Step trees (the additive part's: every node splits one feature, thresholds ascending left to right) are
        # read as a count: a row's leaf is the number of thresholds below its value (a leaf's in-order neighbours
        # are its ancestors) - one comparison for all of them at once, not D gathers (one house: ~35 -> ~10 us).
        step = ~levels & step_trees(self.feature, self.threshold)
        st = np.flatnonzero(step)
        self._steps = (
            (
                self.feature[st, 0].astype(np.intp),
                np.ascontiguousarray(_in_order(self.threshold[st])),
                np.ascontiguousarray(self.leaf[st]).ravel(),
                np.arange(len(st), dtype=np.intp) * (n_internal + 1),
            )
            if len(st)
            else None
        )
        rest = np.flatnonzero(~levels & ~step)
        m = 2 * n_internal + 1
        root = np.arange(len(rest), dtype=np.intp) * m
        nodes = np.zeros((len(rest), m), dtype=[("threshold", np.float64), ("feature", np.intp)])
        nodes["threshold"][:, :n_internal] = self.threshold[rest]
        nodes["feature"][:, :n_internal] = self.feature[rest]
        self._flat = (
            nodes.ravel(),
            np.hstack([np.zeros((len(rest), n_internal)), self.leaf[rest]]).ravel(),
            1 - root,
            root,
        )

    @property
    def version(self) -> str:
        return self.meta["version"]

    @property
    def default_day(self) -> float:
        return float(self.meta["reference_day"])

    # --- loading -------------------------------------------------------------------------------------------
    @classmethod
    def from_bytes(cls, data: bytes, expected_sha256: str | None = None) -> Predictor:
        if expected_sha256 is not None and sha256_hex(data) != expected_sha256:
            from kcprice.errors import ArtifactIntegrityError

            raise ArtifactIntegrityError(f"artifact sha256 {sha256_hex(data)} != recorded {expected_sha256}")
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            missing = set(_ARRAYS) - set(z.files)
            if missing:
                raise ValueError(f"artifact lacks arrays {sorted(missing)}")
            a = {k: z[k] for k in _ARRAYS}
            spread_coef = z["spread_coef"] if "spread_coef" in z.files else None  # models before ranges lack it
            sales = z["comps"] if "comps" in z.files else None  # and comparables
            cover = z["cover"] if "cover" in z.files else None  # and explanations
            residual = z["local_residual"] if "local_residual" in z.files else None  # and the local correction
        meta = json.loads(str(a["meta"]))
        _check_compatible(meta, a["grids"])
        # Nothing non-finite is ever served: a NaN leaf or map cell would price some houses NaN (thresholds are
        # +inf where a tree is padded; NaN is never a threshold).
        bad = [k for k in ("leaf", "grids", "baseline") if not np.isfinite(a[k]).all()]
        trend = meta.get("trend")
        bad += ["trend"] * bool(trend is not None and not np.isfinite([trend[k] for k in _TREND_KEYS]).all())
        bad += ["threshold"] * bool(np.isnan(a["threshold"]).any())
        if bad:
            raise ValueError(f"artifact {meta.get('version')} holds non-finite values in {', '.join(bad)}")
        model = cls(
            feature=a["feature"],
            threshold=a["threshold"],
            leaf=a["leaf"],
            baseline=float(a["baseline"]),
            grids=LocationGrids(a["grids"]),
            meta=meta,
        )
        if spread_coef is not None and meta.get("ranges"):
            if spread_coef.shape != (len(FEATURE_NAMES),):
                raise ValueError(f"artifact {meta.get('version')}: spread_coef has shape {spread_coef.shape}")
            model.ranges = Ranges(spread_coef, meta["ranges"])
        if sales is not None:
            model.comparables = Comparables(sales)
        if residual is not None and meta.get("local"):
            if sales is None or residual.shape != (len(sales),):
                raise ValueError(f"artifact {meta.get('version')}: local_residual does not fit its sales")
            model.local = LocalResiduals(sales[:, _COMPS_LAT], sales[:, _COMPS_LONG], residual, meta["local"])
        if cover is not None:
            if cover.shape != (a["leaf"].shape[0], 2 * a["threshold"].shape[1] + 1) or not np.isfinite(cover).all():
                raise ValueError(f"artifact {meta.get('version')}: cover does not fit its trees")
            model._cover = cover  # float32 as shipped; the explanation's tables widen it when first built
        return model

    @classmethod
    def load(cls, path: str) -> Predictor:
        with open(path, "rb") as f:
            return cls.from_bytes(f.read())

    # --- scoring -------------------------------------------------------------------------------------------
    def raw_scores(self, features: np.ndarray) -> np.ndarray:
        """Model output before the inverse link: log(price). (n, n_features) -> (n,). A large batch is split over
        the CPUs the process may use: numpy's gathers release the GIL (measured on 2 cores, 21,613 rows: 1.22 s on
        one thread, 0.62 s on two), and each row's score is the same whichever thread computes it."""
        x = np.ascontiguousarray(features, dtype=np.float64)
        if not np.isfinite(x).all():
            raise ValueError("features must be finite")
        n = x.shape[0]
        workers = min(_cpus(), n // _PARALLEL_ROWS)
        if workers > 1:
            parts = np.array_split(np.arange(n), workers)
            out = np.concatenate(list(_pool().map(lambda idx: self._scores(x[idx]), parts)))
        else:
            out = self._scores(x)
        trend = self.meta.get("trend")
        if n == 1:  # the API's common case: the same operations in the same order on the row's floats (~5 us less)
            total, row = float(out[0]), x[0].tolist()
            if trend:
                total += trend["per_day"] * min(max(row[_DAY] - trend["from_day"], 0.0), trend["max_days"])
            if self.local is not None:
                total += self.local.one(row[_LAT], row[_LONG])
            return np.array([total])
        if trend:
            out = out + trend_term(trend, x)
        return out + self.local.correction(x[:, _LAT], x[:, _LONG]) if self.local is not None else out

    def _scores(self, x: np.ndarray) -> np.ndarray:
        # Walked trees' sum, plus the step trees', plus the oblivious trees', plus the baseline: the same operations
        # in the same order for one row and for a batch (each row's sums run along its own contiguous row), so the
        # same bits.
        nodes, value, shift, root = self._flat
        n, n_features = x.shape
        if n == 1:  # the API's common case: skip the block bookkeeping
            row = x[0]
            total = 0.0
            if root.size:
                node = root
                for _ in range(self.depth):
                    at = nodes[node]
                    node = 2 * node + shift + (row[at["feature"]] > at["threshold"])
                total = value[node].sum()
            if self._steps is not None:
                feature, sorted_threshold, leaf, base = self._steps
                total = total + leaf[base + (row[feature][:, None] > sorted_threshold).sum(axis=1)].sum()
            if self._oblivious is not None:
                feature, threshold, leaf, base = self._oblivious
                total = total + leaf[base + leaf_code((row[feature] > threshold).reshape(-1, 8), self.depth)].sum()
            return np.array([total + self.baseline])
        out = np.zeros(n)
        if root.size:
            for start in range(0, n, _CHUNK):
                block = x[start : start + _CHUNK]
                flat_rows = block.ravel()
                row0 = (np.arange(block.shape[0], dtype=np.intp) * n_features)[:, None]
                node = np.broadcast_to(root, (block.shape[0], root.size))
                for _ in range(self.depth):
                    at = nodes[node]
                    node = 2 * node + shift + (flat_rows[row0 + at["feature"]] > at["threshold"])
                out[start : start + _CHUNK] = value[node].sum(axis=1)
        if self._steps is not None:  # the same counts: searchsorted's side="left" counts thresholds < x
            feature, sorted_threshold, leaf, base = self._steps
            at = np.empty((n, len(base)), dtype=np.intp)
            for j, (f, thr) in enumerate(zip(feature, sorted_threshold, strict=True)):
                at[:, j] = np.searchsorted(thr, x[:, f], side="left")
            out = out + leaf[base + at].sum(axis=1)
        if self._oblivious is not None:
            feature, threshold, leaf, base = self._oblivious
            ranks = self._ranks
            ranked = (ranks.of_rows(x), ranks.thresholds) if ranks is not None else None
            for start in range(0, n, _CHUNK):
                block = x[start : start + _CHUNK]
                part = out[start : start + _CHUNK]  # a view: added in place
                if ranked is None:
                    right = (block[:, feature] > threshold).reshape(len(block), -1, 8)
                    part += leaf[base + leaf_code(right, self.depth)].sum(axis=1)
                else:  # the same decisions from a byte per value, 32 rows at a time (2,000 trees: 1.1-1.3 s, not 1.9)
                    rank, against = ranked[0][start : start + _CHUNK], ranked[1]
                    for i in range(0, len(block), 32):
                        right = (rank[i : i + 32][:, feature] > against).reshape(-1, len(base), 8)
                        part[i : i + 32] += leaf[base + leaf_code(right, self.depth)].sum(axis=1)
        return out + self.baseline

    @functools.cached_property
    def _ranks(self) -> _Ranks | None:
        """Built at the first batch, not at cold start: a one-house request never needs them (~6 ms, 1,000 trees)."""
        return _Ranks.of(*self._oblivious[:2], int(self.feature.max()) + 1) if self._oblivious is not None else None

    def predict_raw(self, raw: np.ndarray) -> np.ndarray:
        """(n, len(RAW_COLUMNS)) raw inputs -> (n,) prices in dollars."""
        return np.exp(self.raw_scores(design_matrix(raw, self.grids)))

    def predict_houses(self, houses) -> list[float]:
        raw = np.array([h.raw_row(self.default_day) for h in houses], dtype=np.float64)
        return self.predict_raw(raw).tolist()

    def value_raw(self, raw: np.ndarray, coverage: float = DEFAULT_COVERAGE) -> dict[str, np.ndarray]:
        """Values with their range at `coverage` and the forecast standard deviation (percent); without ranges in
        the artifact, low/high/fsd are NaN (the callers say null)."""
        features = design_matrix(raw, self.grids)
        log_value = self.raw_scores(features)
        out = {"price": np.exp(log_value)}
        if self.ranges is None:
            nan = np.full(len(log_value), np.nan)
            out.update(low=nan, high=nan, fsd=nan)
            return out
        spread = self.ranges.spread(features)
        out["low"], out["high"] = self.ranges.bounds(log_value, spread, coverage)
        out["fsd"] = self.ranges.fsd(spread)
        return out

    def value_houses(self, houses, coverage: float = DEFAULT_COVERAGE) -> dict[str, np.ndarray]:
        raw = np.array([h.raw_row(self.default_day) for h in houses], dtype=np.float64)
        out = self.value_raw(raw, coverage)
        out["raw"] = raw
        return out

    def explain_raw(self, raw_row: np.ndarray) -> dict | None:
        """Exact group contributions to one house's log value (None: a model that ships no covers). The tables are
        built at the first call (kcprice.explain), not at cold start: most requests never ask."""
        explainer = self._tables()
        if explainer is None:
            return None
        x = design_matrix(raw_row[None, :], self.grids)
        contributions = dict(zip(GROUP_NAMES, explainer.explain(x[0]).tolist(), strict=True))
        if trend := self.meta.get("trend"):  # the market's trend past the training sales: the sale date's, exactly
            contributions["sale_date"] += float(trend_term(trend, x)[0])  # (0 on every training sale)
        if self.local is not None:  # nearby sales' residuals: a function of the coordinates alone, so location's
            contributions["location"] += float(self.local.correction(x[:, _LAT], x[:, _LONG])[0])
        return {"baseline": explainer.expected + self.baseline, "contributions": contributions}

    def _tables(self) -> Explainer | None:
        if self._explainer is None and self._cover is not None:
            self._explainer = Explainer(self.feature, self.threshold, self.leaf, self._cover.astype(np.float64))
        return self._explainer

    def prepare(self) -> None:
        """Build now what is otherwise built at first use - the explanation tables (~0.7 s for 1,000 oblivious
        trees) and the batch ranks: for a SnapStart snapshot, whose restored environments then never build them."""
        self._tables()
        _ = self._ranks

    def comparable_sales(self, raw_row: np.ndarray, n: int, house_id: str | None = None) -> list[dict] | None:
        """The n most similar training sales (None: a model that ships none)."""
        if self.comparables is None:
            return None
        return self.comparables.find(raw_row, n, float(house_id) if house_id else None)

    def comparable_sales_many(self, raw: np.ndarray, n: int, house_ids: list[str]) -> list[list[dict] | None]:
        """comparable_sales for every row (house_ids[k] of raw[k]): the same answers, batched by grid cell."""
        if self.comparables is None:
            return [None] * len(raw)
        ids = np.array([float(i) if i else np.nan for i in house_ids])  # NaN equals no sale id: excludes none
        return list(self.comparables.find_many(raw, n, ids))


@dataclass
class _Ranks:
    """Oblivious trees' decisions for a batch, a byte each: a value's rank among its feature's thresholds (how many
    lie below it) exceeds a threshold's own rank exactly when the value exceeds the threshold, and a batch then
    gathers and compares bytes instead of doubles. Padding (+inf) ranks 255: never exceeded."""

    levels: list[np.ndarray]  # each feature's sorted distinct finite thresholds, by feature
    thresholds: np.ndarray  # (trees * 8,) uint8: each level's threshold as a rank

    @classmethod
    def of(cls, feature: np.ndarray, threshold: np.ndarray, n_features: int) -> _Ranks | None:
        finite = np.isfinite(threshold)
        levels = [np.unique(threshold[finite & (feature == f)]) for f in range(n_features)]
        if max(len(v) for v in levels) > 254:  # not a byte: compare the doubles
            return None
        ranks = np.full(len(threshold), 255, dtype=np.uint8)
        for f in range(n_features):
            at = finite & (feature == f)
            ranks[at] = np.searchsorted(levels[f], threshold[at])
        return cls(levels, ranks)

    def of_rows(self, x: np.ndarray) -> np.ndarray:
        out = np.zeros(x.shape, dtype=np.uint8)
        for f, values in enumerate(self.levels):
            if len(values):
                out[:, f] = np.searchsorted(values, x[:, f], side="left")
        return out


def trend_term(trend: dict[str, float], x: np.ndarray) -> np.ndarray:
    """The market's trend past the training data (kcprice.training.TREND), in log price: 0 up to the latest
    training sale, then per_day for each day after it, for at most max_days. Elementwise: one row or a batch,
    the same bits."""
    day = x[:, _DAY]
    # np.minimum/np.maximum: np.clip's result, without its ~5 us of Python-level dispatch per call
    return trend["per_day"] * np.minimum(np.maximum(day - trend["from_day"], 0.0), trend["max_days"])


_TREND_KEYS = ("per_day", "from_day", "max_days")
_DAY = FEATURE_NAMES.index("day")
_LAT, _LONG = FEATURE_NAMES.index("lat"), FEATURE_NAMES.index("long")
_COMPS_LAT, _COMPS_LONG = COMPS_COLUMNS.index("lat"), COMPS_COLUMNS.index("long")
_PARALLEL_ROWS = 2048  # below this many rows per thread, a thread costs more than it saves


def in_order_ranks(depth: int) -> np.ndarray:
    """For each heap position of a perfect tree's internal nodes, its rank in sorted (in-order) order: a perfect
    binary search tree over sorted thresholds sends a row to leaf #(thresholds < x), left to right."""
    n_int = 2**depth - 1
    order = np.empty(n_int, dtype=np.intp)
    stack = [(0, 0, n_int)]  # (heap position, sorted range [lo, hi))
    while stack:
        pos, lo, hi = stack.pop()
        if pos < n_int:
            mid = (lo + hi) // 2
            order[pos] = mid
            stack += [(2 * pos + 1, lo, mid), (2 * pos + 2, mid + 1, hi)]
    return order


def step_trees(feature: np.ndarray, threshold: np.ndarray) -> np.ndarray:
    """(T,) bool: the trees that are step functions of one feature - every node splits it, and the thresholds
    read left to right (in order) never decrease (+inf padding last)."""
    ordered = _in_order(threshold)
    return (feature == feature[:, :1]).all(axis=1) & (ordered[:, 1:] >= ordered[:, :-1]).all(axis=1)


def _in_order(threshold: np.ndarray) -> np.ndarray:
    """(T, 2**D - 1) thresholds in heap order -> the same, each tree's read left to right (in order)."""
    return threshold[:, np.argsort(in_order_ranks(int(np.log2(threshold.shape[1] + 1))))]


@functools.cache
def _cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


@functools.cache
def _pool() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(_cpus(), thread_name_prefix="kcprice-score")


def _check_compatible(meta: dict[str, Any], grids: np.ndarray) -> None:
    """The trees index columns of design_matrix: an artifact built for another feature list would be scored on the
    wrong columns, so it is refused rather than served."""
    features, raw_columns = meta.get("features"), meta.get("raw_columns")
    if features != list(FEATURE_NAMES) or raw_columns != list(RAW_COLUMNS) or grids.shape[0] != len(MAP_NAMES):
        from kcprice.errors import IncompatibleArtifactError

        raise IncompatibleArtifactError(
            f"model {meta.get('version')} (kcprice {meta.get('libraries', {}).get('kcprice')}) was built for "
            f"{len(features or [])} features and {grids.shape[0]} maps; this code computes {len(FEATURE_NAMES)} and "
            f"{len(MAP_NAMES)}: retrain it with this code"
        )


def save_artifact(path_or_buffer, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
    """Write the .npz; meta travels inside as a unicode scalar so the file alone describes the model."""
    # allow_pickle=False: an object array (which only pickle could store) is refused here, not at load time.
    np.savez(path_or_buffer, allow_pickle=False, meta=np.array(json.dumps(meta, sort_keys=True)), **arrays)


def artifact_bytes(arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> bytes:
    buf = io.BytesIO()
    save_artifact(buf, arrays, meta)
    return buf.getvalue()


__all__ = ["RAW_COLUMNS", "Predictor", "artifact_bytes", "save_artifact", "sha256_hex"]
