"""Feature engineering in plain numpy: the same function builds training and serving design matrices.

Location dominates this market, so besides raw coordinates the model sees (a) coordinates rotated at
several angles (trees split on axis-aligned lines; rotations let them cut diagonal neighbourhood edges) and
(b) squared distances to the three job centres (Seattle, Bellevue, Redmond): radial, so hard to build from
axis-aligned splits; and (c) smoothed maps, looked up by bilinear interpolation: log(price per sq ft) at three
scales, plus the neighbourhood's waterfront share and mean view (shoreline and view corridors are narrow features
of the map that the price maps blur) and its density of sales.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from kcprice.fields import FIELDS

RAW_COLUMNS: tuple[str, ...] = FIELDS + ("day",)
_I = {c: i for i, c in enumerate(RAW_COLUMNS)}
# Adjacent column pairs, read as slices (views) rather than fancy-indexed copies.
_SQFT = slice(_I["sqft_living"], _I["sqft_living"] + 2)
_LATLON = slice(_I["lat"], _I["lat"] + 2)
assert RAW_COLUMNS[_SQFT] == ("sqft_living", "sqft_lot") and RAW_COLUMNS[_LATLON] == ("lat", "long")
_ANGLES = np.deg2rad([15, 30, 45, 60, 75, 105, 120, 135, 150, 165])
_ROTATION = np.vstack([np.cos(_ANGLES), np.sin(_ANGLES)])  # (2, n_angles): [lat, long] @ R
_COS_SIN = tuple(zip(_ROTATION[0].tolist(), _ROTATION[1].tolist(), strict=True))
# Grid over the county: origin, cell size in degrees of latitude, and the longitude/latitude cell ratio that
# makes cells roughly square at 47.5 N (1 / cos(47.5 deg) ~ 1.48).
GRID_ORIGIN = (47.05, -122.60)
GRID_EXTENT = (0.80, 1.60)
GRID_CELL = 0.004
GRID_LON_RATIO = 1.48
GRID_BANDWIDTHS = (1.0, 3.0, 8.0)  # Gaussian sigma in cells: ~0.45, 1.3 and 3.6 km
GRID_PRIOR_WEIGHT = 3.0
# Context maps (not price): (raw column, or "density", and bandwidth). Density is the share of all sales, so maps
# fitted on a fold (training rows) and on all rows (serving) are on the same scale.
CONTEXT_MAPS = (("waterfront", 1.0), ("waterfront", 3.0), ("view", 1.0), ("view", 3.0), ("density", 3.0))
MAP_NAMES = tuple(f"loc_ppsf_s{b:g}" for b in GRID_BANDWIDTHS) + tuple(f"{c}_s{b:g}" for c, b in CONTEXT_MAPS)
CENTRES = (("seattle", 47.6062, -122.3321), ("bellevue", 47.6101, -122.2015), ("redmond", 47.6740, -122.1210))
KM_PER_DEGREE = (111.0, 75.0)  # latitude, longitude at 47.5 N


@dataclass(frozen=True)
class LocationGrids:
    values: np.ndarray  # (len(MAP_NAMES), ny, nx): price maps, then context maps

    @property
    def flat(self) -> np.ndarray:
        """(ny * nx, n_scales), contiguous: one gather per lookup. Computed once per grid."""
        cached = self.__dict__.get("_flat")
        if cached is None:
            cached = np.ascontiguousarray(self.values.reshape(self.values.shape[0], -1).T)
            object.__setattr__(self, "_flat", cached)
        return cached


FEATURE_NAMES: tuple[str, ...] = (
    RAW_COLUMNS
    + ("age", "years_since_renovation", "log_sqft_living", "log_sqft_lot")
    + tuple(f"rot{round(np.rad2deg(a))}" for a in _ANGLES)
    + tuple(f"dist2_{name}" for name, _, _ in CENTRES)
    + MAP_NAMES
)


def _cell_coords(lat: np.ndarray, lon: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return (lat - GRID_ORIGIN[0]) / GRID_CELL, (lon - GRID_ORIGIN[1]) / (GRID_CELL * GRID_LON_RATIO)


def _grid_shape() -> tuple[int, int]:
    return int(GRID_EXTENT[0] / GRID_CELL) + 1, int(GRID_EXTENT[1] / (GRID_CELL * GRID_LON_RATIO)) + 1


def _blur(a: np.ndarray, sigma: float) -> np.ndarray:
    r = int(3 * sigma)
    k = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
    a = np.apply_along_axis(np.convolve, 0, a, k, "same")
    return np.apply_along_axis(np.convolve, 1, a, k, "same")


def fit_location_grids(raw: np.ndarray, price: np.ndarray) -> LocationGrids:
    """Kernel-smoothed maps; means are shrunk towards the global mean where sales are sparse."""
    ny, nx = _grid_shape()
    fy, fx = _cell_coords(raw[:, _I["lat"]], raw[:, _I["long"]])
    iy, ix = np.clip(fy.astype(int), 0, ny - 1), np.clip(fx.astype(int), 0, nx - 1)
    counts = np.zeros((ny, nx))
    np.add.at(counts, (iy, ix), 1.0)
    blurred_counts = {b: _blur(counts, b) for b in set(GRID_BANDWIDTHS) | {b for _, b in CONTEXT_MAPS}}

    def smoothed_mean(q: np.ndarray, b: float) -> np.ndarray:
        sums = np.zeros((ny, nx))
        np.add.at(sums, (iy, ix), q)
        prior = float(q.mean())
        return (_blur(sums, b) + prior * GRID_PRIOR_WEIGHT) / (blurred_counts[b] + GRID_PRIOR_WEIGHT)

    log_ppsf = np.log(price) - np.log(raw[:, _I["sqft_living"]])
    maps = [smoothed_mean(log_ppsf, b) for b in GRID_BANDWIDTHS]
    for name, b in CONTEXT_MAPS:
        maps.append(blurred_counts[b] / len(raw) if name == "density" else smoothed_mean(raw[:, _I[name]], b))
    return LocationGrids(np.stack(maps))


def lookup(grids: LocationGrids, lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    """Bilinear interpolation of every scale at once: (n,) coords -> (n, n_scales)."""
    _, ny, nx = grids.values.shape
    fy, fx = _cell_coords(lat, lon)
    fy, fx = fy - 0.5, fx - 0.5  # cell centres
    # np.minimum/np.maximum rather than np.clip: same result, a fraction of the per-call overhead.
    y0 = np.minimum(np.maximum(np.floor(fy), 0.0), ny - 2.0)
    x0 = np.minimum(np.maximum(np.floor(fx), 0.0), nx - 2.0)
    wy = np.minimum(np.maximum(fy - y0, 0.0), 1.0)
    wx = np.minimum(np.maximum(fx - x0, 0.0), 1.0)
    i00 = (y0 * nx + x0).astype(np.intp)
    corners = grids.flat[np.stack([i00, i00 + nx, i00 + 1, i00 + nx + 1])]  # (4, n, n_scales)
    weights = np.stack([(1 - wy) * (1 - wx), wy * (1 - wx), (1 - wy) * wx, wy * wx])[:, :, None]
    return (corners * weights).sum(axis=0)


def _lookup_one(flat: np.ndarray, ny: int, nx: int, lat: float, lon: float) -> list[float]:
    """lookup for one point in Python floats (~5x cheaper than numpy on 1-element arrays), bit-identical to it."""
    fy = (lat - GRID_ORIGIN[0]) / GRID_CELL - 0.5
    fx = (lon - GRID_ORIGIN[1]) / (GRID_CELL * GRID_LON_RATIO) - 0.5
    y0 = min(max(math.floor(fy), 0), ny - 2)
    x0 = min(max(math.floor(fx), 0), nx - 2)
    wy = min(max(fy - y0, 0.0), 1.0)
    wx = min(max(fx - x0, 0.0), 1.0)
    i00 = y0 * nx + x0
    # Two 2-cell slices (views, no index arrays), then the batch path's weighted sum in the same order.
    (c00, c01), (c10, c11) = flat[i00 : i00 + 2].tolist(), flat[i00 + nx : i00 + nx + 2].tolist()
    w00, w10, w01, w11 = (1 - wy) * (1 - wx), wy * (1 - wx), (1 - wy) * wx, wy * wx
    return [a * w00 + b * w10 + c * w01 + d * w11 for a, b, c, d in zip(c00, c10, c01, c11, strict=True)]


def design_matrix(raw: np.ndarray, grids: LocationGrids) -> np.ndarray:
    """(n, len(RAW_COLUMNS)) raw inputs -> (n, len(FEATURE_NAMES)) model features."""
    raw = np.asarray(raw, dtype=np.float64)
    if raw.ndim != 2 or raw.shape[1] != len(RAW_COLUMNS):
        raise ValueError(f"expected an (n, {len(RAW_COLUMNS)}) array of {RAW_COLUMNS}")
    n, k = raw.shape
    if n == 1:  # the API's common case
        return _design_row(raw[0].tolist(), grids)
    out = np.empty((n, len(FEATURE_NAMES)))  # filled by slices: no per-piece arrays to stack
    out[:, :k] = raw
    sale_year = 2014.0 + raw[:, _I["day"]] / 365.25
    out[:, k] = age = sale_year - raw[:, _I["yr_built"]]
    renovated = raw[:, _I["yr_renovated"]]
    out[:, k + 1] = np.where(renovated > 0, sale_year - renovated, age)
    np.log(raw[:, _SQFT], out=out[:, k + 2 : k + 4])
    latlon = raw[:, _LATLON]
    # lat * cos + lon * sin as two rounded ufunc steps, not matmul: BLAS may fuse or reorder them differently
    # by batch size, and a value sitting on a split threshold would then change leaf with the batch it came in.
    rotated = out[:, k + 4 : k + 4 + _ROTATION.shape[1]]
    np.multiply(latlon[:, :1], _ROTATION[0], out=rotated)
    rotated += latlon[:, 1:] * _ROTATION[1]
    j = k + 4 + _ROTATION.shape[1]
    for i, (_, c_lat, c_lon) in enumerate(CENTRES):
        out[:, j + i] = _dist2(latlon[:, 0], latlon[:, 1], c_lat, c_lon)
    out[:, j + len(CENTRES) :] = lookup(grids, latlon[:, 0], latlon[:, 1])
    return out


def _design_row(r: list[float], grids: LocationGrids) -> np.ndarray:
    """design_matrix for one row, mostly in Python floats: ~2x cheaper than a dozen numpy calls on 1-element arrays.
    Bit-identical to the batch path (the same correctly rounded operations in the same order; tested on every
    row of the data): many rows sit exactly on a split threshold, so one ulp can move a price by several percent."""
    sale_year = 2014.0 + r[_I["day"]] / 365.25
    age = sale_year - r[_I["yr_built"]]
    renovated = r[_I["yr_renovated"]]
    lat, lon = r[_I["lat"]], r[_I["long"]]
    r += [age, sale_year - renovated if renovated > 0 else age]
    r += np.log(r[_SQFT]).tolist()  # numpy's log, not math.log: they can differ in the last bit
    r += [lat * c + lon * s for c, s in _COS_SIN]
    r += [_dist2(lat, lon, c_lat, c_lon) for _, c_lat, c_lon in CENTRES]
    _, ny, nx = grids.values.shape
    r += _lookup_one(grids.flat, ny, nx, lat, lon)
    return np.array([r])


def _dist2(lat, lon, c_lat: float, c_lon: float):
    """Squared km to a centre (trees only need the order, so no sqrt). Floats or arrays: one definition, so the
    one-row and batch paths do the same rounded operations."""
    dy, dx = (lat - c_lat) * KM_PER_DEGREE[0], (lon - c_lon) * KM_PER_DEGREE[1]
    return dy * dy + dx * dx
