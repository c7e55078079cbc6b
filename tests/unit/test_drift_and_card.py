import numpy as np

from kcprice import card, drift
from kcprice.features import RAW_COLUMNS


def test_psi_is_small_for_the_same_population_and_large_for_a_shift(kc_sales):
    ref = drift.reference(kc_sales.raw)
    rng = np.random.default_rng(0)
    sample = kc_sales.raw[rng.choice(len(kc_sales), 3000, replace=False)]
    same = drift.drift_report(ref, sample, threshold=0.2)
    assert same["drifted"] == [] and same["max_psi"] < 0.05
    shifted = sample.copy()
    shifted[:, RAW_COLUMNS.index("sqft_living")] *= 1.6
    report = drift.drift_report(ref, shifted, threshold=0.2)
    assert report["drifted"] == ["sqft_living"] and report["psi"]["sqft_living"] > 0.5


def test_psi_skips_columns_without_values(kc_sales):
    ref = drift.reference(kc_sales.raw)
    raw = kc_sales.raw[:100].copy()
    raw[:, -1] = np.nan  # an inventory has no sale dates
    assert "day" not in drift.psi(ref, raw) and "zipcode" in drift.psi(ref, raw)


def test_model_card_files(small_model, kc_sales):
    ref = kc_sales.take(np.arange(0, len(kc_sales), 20))
    report = drift.drift_report(small_model.meta["reference_distributions"], ref.raw, 0.2)
    files = card.render(small_model, ref, report)
    assert {"card.html", "card.json", "residuals.png", "predicted_vs_actual.png", "importance.png"} == set(files)
    page = files["card.html"].decode()
    assert small_model.meta["version"] in page and page.count("data:image/png;base64,") == 3
    assert "<b>refused</b>" not in page  # no gate verdict in the metadata: none shown
    import dataclasses

    refused = {**small_model.meta, "gate_decision": "refused", "holdout": {"why": "not below the champion's <10%>"}}
    page = card.render(dataclasses.replace(small_model, meta=refused), ref, report)["card.html"].decode()
    assert "<b>refused</b>: not below the champion&#x27;s &lt;10%&gt;" in page
