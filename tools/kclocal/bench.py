"""`make bench`: speed and size figures, each measured side by side with its reference in the same run.

Shared machines are noisy, so every figure is reported next to a reference measured in this run
(interleaved where possible) and the ratio is what the goals are checked against.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "data" / "kc_house_data.csv"
OUT = ROOT / "build" / "bench.json"

COLD_NUMPY = """
import time; t0 = time.perf_counter()
import numpy as np
from kcprice.predictor import Predictor
p = Predictor.load({path!r})
p.predict_raw(np.array([{row}]))
print(time.perf_counter() - t0)
"""
COLD_SKLEARN = """
import time; t0 = time.perf_counter()
import numpy as np, joblib
from kcprice.features import design_matrix
m = joblib.load({path!r})
m.estimator.predict(design_matrix(np.array([{row}]), m.grids))
print(time.perf_counter() - t0)
"""


def timings(fn: Callable[[], object], n: int) -> np.ndarray:
    out = np.empty(n)
    for i in range(n):
        t = time.perf_counter()
        fn()
        out[i] = time.perf_counter() - t
    return out


def interleaved(a: Callable[[], object], b: Callable[[], object], n: int) -> tuple[np.ndarray, np.ndarray]:
    """Alternate a and b in small blocks so both see the same machine load."""
    ta, tb = [], []
    for _ in range(n // 100):
        ta.append(timings(a, 100))
        tb.append(timings(b, 100))
    return np.concatenate(ta), np.concatenate(tb)


def cold_start(script: str, runs: int) -> float:
    vals = [
        float(subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout)
        for _ in range(runs)
    ]
    return statistics.median(vals)


def model_section(results: dict) -> None:
    import joblib

    from kcprice.dataset import read_sales
    from kcprice.training import train

    sales, _ = read_sales(DATA.read_bytes())
    model = train(sales, evaluate_splits=False)
    tmp = Path(tempfile.mkdtemp())
    npz, pkl = tmp / "model.npz", tmp / "model.joblib"
    npz.write_bytes(model.artifact)
    joblib.dump(model.fitted, pkl)
    row = sales.raw[0].tolist()

    # Cold start: fresh interpreters, alternating, median of 7 each.
    cn, cs = [], []
    for _ in range(7):
        cn.append(cold_start(COLD_NUMPY.format(path=str(npz), row=row), 1))
        cs.append(cold_start(COLD_SKLEARN.format(path=str(pkl), row=row), 1))
    cold_n, cold_s = statistics.median(cn), statistics.median(cs)
    results["cold_start_s"] = {"numpy": cold_n, "sklearn": cold_s, "ratio": cold_n / cold_s, "goal_ratio": 0.10}

    x1 = sales.raw[:1]
    tn, ts = interleaved(lambda: model.predictor.predict_raw(x1), lambda: model.fitted.predict_raw(x1), 3000)
    results["single_row_us"] = {
        "numpy_p50": np.median(tn) * 1e6,
        "numpy_p99": np.percentile(tn, 99) * 1e6,
        "sklearn_p50": np.median(ts) * 1e6,
        "sklearn_p99": np.percentile(ts, 99) * 1e6,
        "goal_p50": 100.0,
    }
    bn = timings(lambda: model.predictor.predict_raw(sales.raw), 5)
    bs = timings(lambda: model.fitted.predict_raw(sales.raw), 5)
    results["batch_21613_s"] = {"numpy": float(np.median(bn)), "sklearn": float(np.median(bs)), "goal": 0.5}
    results["artifact_mb"] = {"npz": npz.stat().st_size / 1e6, "joblib": pkl.stat().st_size / 1e6}


def table(results: dict) -> str:
    lines = [f"{'measure':34s} {'value':>12s}  {'reference':>12s}  {'ratio/goal':>14s}"]
    c = results["cold_start_s"]
    lines.append(
        f"{'cold start (s) numpy vs sklearn':34s} {c['numpy']:12.3f}  {c['sklearn']:12.3f}  "
        f"{c['ratio']:6.3f} <= {c['goal_ratio']:.2f}"
    )
    s = results["single_row_us"]
    lines.append(f"{'single row p50 (us)':34s} {s['numpy_p50']:12.1f}  {s['sklearn_p50']:12.1f}  {'<= 100':>14s}")
    lines.append(f"{'single row p99 (us)':34s} {s['numpy_p99']:12.1f}  {s['sklearn_p99']:12.1f}")
    b = results["batch_21613_s"]
    lines.append(f"{'batch 21,613 rows (s)':34s} {b['numpy']:12.3f}  {b['sklearn']:12.3f}  {'<= 0.5':>14s}")
    a = results["artifact_mb"]
    lines.append(f"{'artifact size (MB) npz vs joblib':34s} {a['npz']:12.2f}  {a['joblib']:12.2f}")
    for extra in results.get("rows", []):
        lines.append(extra)
    return "\n".join(lines)


def main() -> int:
    results: dict = {}
    print("benchmarking the model (numpy serving vs scikit-learn)...", file=sys.stderr, flush=True)
    model_section(results)
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text(json.dumps(results, indent=2, default=float))
    print(table(results))
    print(f"\nsaved {OUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
