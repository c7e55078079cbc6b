"""Model card (training side only: matplotlib): metrics on both splits and on the reference holdout,
per-zipcode errors, residual and predicted-vs-actual plots, permutation importance, drift of the upload."""

from __future__ import annotations

import base64
import html
import io
import json

import matplotlib

matplotlib.use("Agg")  # no display in Lambda
import matplotlib.pyplot as plt
import numpy as np

from kcprice.dataset import Sales
from kcprice.features import RAW_COLUMNS

ZIP = RAW_COLUMNS.index("zipcode")


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def zipcode_errors(ref: Sales, pred: np.ndarray) -> list[dict]:
    ape = np.abs(pred - ref.price) / ref.price * 100
    rows = []
    for z in np.unique(ref.raw[:, ZIP]):
        m = ref.raw[:, ZIP] == z
        rows.append(
            {
                "zipcode": int(z),
                "n": int(m.sum()),
                "mape": float(ape[m].mean()),
                "median_price": float(np.median(ref.price[m])),
            }
        )
    return sorted(rows, key=lambda r: -r["mape"])


def permutation_importance(model, ref: Sales, seed: int = 0, max_rows: int = 1000) -> dict[str, float]:
    """Increase in MAPE (points) when one raw input column is shuffled; location columns move their features.
    On at most max_rows sales (sklearn's max_samples idea): 20 predictions of the whole holdout were ~1 s of the
    retrain budget, and on the KC holdout a 1,000-row sample moves the figures no more than another shuffle seed."""
    rng = np.random.default_rng(seed)
    if len(ref) > max_rows:
        ref = ref.take(np.sort(rng.choice(len(ref), max_rows, replace=False)))
    base = np.mean(np.abs(model.predict_raw(ref.raw) - ref.price) / ref.price) * 100
    out = {}
    for j, name in enumerate(RAW_COLUMNS):
        raw = ref.raw.copy()
        raw[:, j] = rng.permutation(raw[:, j])
        out[name] = float(np.mean(np.abs(model.predict_raw(raw) - ref.price) / ref.price) * 100 - base)
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))


def render(result, ref: Sales, drift: dict | None = None) -> dict[str, bytes]:
    model, meta = result.predictor, result.meta
    pred = model.predict_raw(ref.raw)
    files: dict[str, bytes] = {}

    fig, ax = plt.subplots(figsize=(5, 5))
    ax.scatter(ref.price / 1e3, pred / 1e3, s=4, alpha=0.4)
    hi = float(max(ref.price.max(), pred.max()) / 1e3)
    ax.plot([0, hi], [0, hi], color="k", lw=0.8)
    ax.set(xscale="log", yscale="log", xlabel="actual price (k$)", ylabel="predicted (k$)", title="Predicted vs actual")
    files["predicted_vs_actual.png"] = _png(fig)

    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.hist(np.log(pred / ref.price), bins=60)
    ax.set(xlabel="log(predicted / actual)", ylabel="sales", title="Residuals on the reference holdout")
    files["residuals.png"] = _png(fig)

    importance = permutation_importance(model, ref)
    fig, ax = plt.subplots(figsize=(6, 5))
    names = list(importance)[::-1]
    ax.barh(names, [importance[n] for n in names])
    ax.set(xlabel="MAPE increase when shuffled (points)", title="Permutation importance")
    files["importance.png"] = _png(fig)

    zips = zipcode_errors(ref, pred)
    files["card.json"] = json.dumps(
        {"version": meta["version"], "zipcode_errors": zips, "importance": importance, "drift": drift}, indent=2
    ).encode()
    files["card.html"] = _html(meta, zips, importance, drift, files).encode()
    return files


NOT_SPLIT = (
    "<p>not evaluated per upload: the reference holdout below decides. <code>kcprice evaluate</code> "
    "measures the design on the fixed split protocol.</p>"
)


def _html(meta: dict, zips: list[dict], importance: dict, drift: dict | None, files: dict[str, bytes]) -> str:
    def img(name: str) -> str:
        return f'<img alt="{name}" src="data:image/png;base64,{base64.b64encode(files[name]).decode()}">'

    def table(rows: list[dict], cols: list[str]) -> str:
        head = "".join(f"<th>{c}</th>" for c in cols)
        body = "".join(
            "<tr>"
            + "".join(f"<td>{r[c]:.2f}</td>" if isinstance(r[c], float) else f"<td>{r[c]}</td>" for c in cols)
            + "</tr>"
            for r in rows
        )
        return f"<table><tr>{head}</tr>{body}</table>"

    cols = ("mape", "median_ape", "within_5", "within_10", "within_20", "r2", "rmse", "mae", "n")
    splits = [{"split": k, **{m: v.get(m) for m in cols}} for k, v in meta["metrics"].items()]
    hold = meta.get("holdout", {})
    gate = [
        {"model": k, **{m: v.get(m) for m in cols}}
        for k, v in (("challenger", hold.get("challenger")), ("champion", hold.get("champion")))
        if v
    ]
    drift_html = "<p>no drift computed</p>"
    if drift:
        rows = [
            {"feature": k, "psi": v, "flag": "DRIFT" if v > drift["threshold"] else ""}
            for k, v in sorted(drift["psi"].items(), key=lambda kv: -kv[1])
        ]
        drift_html = f"<p>PSI threshold {drift['threshold']}; drifted: {', '.join(drift['drifted']) or 'none'}</p>"
        drift_html += table(rows, ["feature", "psi", "flag"])
    lineage = html.escape(json.dumps(meta.get("lineage", {}), indent=2))
    verdict = ""
    if meta.get("gate_decision"):  # a refused challenger is published too: its card says so
        verdict = f"<p><b>{html.escape(meta['gate_decision'])}</b>: {html.escape(str(hold.get('why', '')))}</p>"
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>kc-price model {meta["version"]}</title>
<style>body{{font-family:sans-serif;max-width:1000px;margin:auto}} table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:2px 6px;text-align:right}} img{{max-width:100%}}</style></head><body>
<h1>Model {meta["version"]}</h1>
<p>{meta["model"]} on {meta["target"]}, {meta["n_trees"]} trees of depth {meta["depth"]}, trained on
{meta["n_rows"]:,} sales (data sha256 <code>{meta["data_sha256"][:16]}</code>), created {meta["created_at"]}.</p>
<h2>Evaluation splits</h2>{table(splits, ["split", *cols]) if splits else NOT_SPLIT}
<h2>Reference holdout (promotion gate)</h2>{verdict}{table(gate, ["model", *cols]) if gate else ""}
<h2>Predictions</h2>{img("predicted_vs_actual.png")}{img("residuals.png")}
<h2>Feature importance</h2>{img("importance.png")}
<h2>Drift of the upload against the previous champion</h2>{drift_html}
<h2>Error by zip code (reference holdout)</h2>{table(zips, ["zipcode", "n", "mape", "median_price"])}
<h2>Lineage</h2><pre>{lineage}</pre>
<h2>Libraries</h2><pre>{html.escape(json.dumps(meta["libraries"], indent=2))}</pre>
</body></html>"""
