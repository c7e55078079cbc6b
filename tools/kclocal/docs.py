"""`make docs`: the figures in README.md and docs/ come from here, so they cannot go stale.

Each generated block sits between `<!-- BEGIN generated:NAME -->` and `<!-- END generated:NAME -->` and is
rendered from a file in docs/data/ that a command writes:

- `demo.txt`: `make docs` runs the demo story on a fresh local stack (own ports, own temporary state) and keeps
  its output, with the time each step took;
- `bench.json`: a copy of `build/bench.json` from the last `make bench`;
- `model.json`: the metrics of `kcprice train` on the shipped data (random and temporal splits);
- `test-times.json`: the seconds of each step of the last `make test` (it writes `build/test-times.json`);
- `quality.json`: the evaluation protocol's table from the last `make quality` (`kcprice evaluate`).

`python -m kclocal.docs --check` (a unit test runs it) fails when a block differs from what its data renders:
edit the data's command, not the block.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "docs" / "data"
PAGES = [ROOT / "README.md", ROOT / "docs" / "benchmarks.md", ROOT / "docs" / "model.md"]
BLOCK = re.compile(
    r"(<!-- BEGIN generated:(?P<name>[\w-]+) -->\n)(?P<body>.*?)(<!-- END generated:(?P=name) -->)", re.S
)


def _load(name: str):
    path = DATA / name
    return json.loads(path.read_text()) if name.endswith(".json") else path.read_text()


def demo_block() -> str:
    return "```text\n$ make demo\n" + _load("demo.txt").rstrip("\n") + "\n```\n"


def _row(*cells: object) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def bench_block() -> str:
    r = _load("bench.json")
    c, s, b, w = r["cold_start_s"], r["single_row_us"], r["batch_21613_s"], r["warm_handler_us"]
    hc, p, rt, a = r["handler_cold_start_s"], r["precompute_items_per_s"], r["retrain_full_s"], r["artifact_mb"]
    lines = [
        _row("measure", "kc-price", "reference, same run", "goal"),
        _row("---", "---", "---", "---"),
        *(
            _row(
                f"MAPE, {name} split",
                f"{m['ours']:.2f}%",
                f"default HistGradientBoosting {m['default_hgb']:.2f}%",
                f"<= {m['goal']}%",
            )
            for name, m in r.get("accuracy_mape", {}).items()
        ),
        _row(
            "cold start: import + load artifact + 1 prediction",
            f"{c['numpy']:.3f} s",
            f"scikit-learn + joblib {c['sklearn']:.3f} s (ratio {c['ratio']:.3f})",
            f"ratio <= {c['goal_ratio']:.2f}",
        ),
        _row(
            "one house, p50 / p99",
            f"{s['numpy_p50']:.0f} / {s['numpy_p99']:.0f} us",
            f"scikit-learn `.predict` {s['sklearn_p50']:,.0f} / {s['sklearn_p99']:,.0f} us",
            "p50 <= 100 us",
        ),
        _row("batch of 21,613 houses", f"{b['numpy']:.2f} s", f"scikit-learn {b['sklearn']:.2f} s", "<= 0.5 s"),
        *(
            [
                _row(
                    "batch of 21,613 houses with ranges and confidence",
                    f"{rr['numpy']:.2f} s ({rr['threads']} threads)",
                    f"scikit-learn `.predict` {rr['sklearn']:.2f} s (OMP threads: {rr['omp_threads']}; ratio "
                    f"{rr['ratio']:.2f})",
                    "ratio <= 1.0",
                ),
                _row(
                    "reasons / 5 comparables for one house",
                    f"{r['explain_one_us']['p50']:.0f} / {r['explain_one_us']['comps5_p50']:.0f} us",
                    f"tables built at the first explanation: {r['explain_tables_build_s']:.2f} s",
                    "",
                ),
            ]
            if (rr := r.get("batch_with_ranges_s"))
            else []
        ),
        _row("artifact", f"{a['npz']:.2f} MB (.npz)", f"{a['joblib']:.2f} MB (joblib)", "<= 10 MB"),
        _row(
            "predict handler cold start (import, model from S3, 1 event)",
            f"{hc['kcprice']:.2f} s",
            f"scikit-learn-serving handler {hc['sklearn']:.2f} s (ratio {hc['ratio']:.2f})",
            "",
        ),
        _row(
            "warm predict handler, one house JSON -> JSON, p50 / p99",
            f"{w['kcprice_p50']:.0f} / {w['kcprice_p99']:.0f} us",
            f"scikit-learn-serving handler {w['sklearn_p50']:,.0f} / {w['sklearn_p99']:,.0f} us",
            "<= 150 / 500 us",
        ),
        *(
            [
                _row(
                    "warm predict handler, with reasons and 5 comparables, p50 / p99",
                    f"{x['kcprice_p50']:.0f} / {x['kcprice_p99']:.0f} us",
                    "",
                    "p50 <= 1,000 us",
                )
            ]
            if (x := r.get("warm_handler_explain_comps_us"))
            else []
        ),
        _row(
            "precompute into the local DynamoDB",
            f"{p['kcprice']:,.0f} items/s",
            f"boto3 `batch_writer`, the same items: {p['batch_writer']:,.0f} items/s (ratio {p['ratio']:.2f})",
            "ratio >= 0.8",
        ),
        _row("retrain end to end, 21,613 sales", f"{rt['seconds']:.1f} s", "", "<= 60 s"),
    ]
    for fn, m in r.get("package_mb", {}).items():
        lines.append(_row(f"built {fn} + layers", f"{m['total']:.1f} MB", "", f"<= {m['budget']:.0f} MB"))
    return "\n".join(lines) + "\n"


def model_block() -> str:
    m = _load("model.json")
    head = ("split", "MAPE", "median APE", "within 5 / 10 / 20%", "R2", "default HistGradientBoosting (MAPE), same run")
    lines = [_row(*head), _row(*["---"] * len(head))]
    for name, what in (("random", "random 80/20, seed 42"), ("temporal", "temporal: the latest 20% by date held out")):
        ours = m[name]
        base = f"{ours['baseline_mape']:.2f}%" if "baseline_mape" in ours else "not run"
        within = " / ".join(f"{ours[f'within_{k}']:.1f}%" for k in (5, 10, 20)) if "within_5" in ours else "-"
        median = f"{ours['median_ape']:.2f}%" if "median_ape" in ours else "-"
        lines.append(_row(what, f"{ours['mape']:.2f}%", median, within, f"{ours['r2']:.3f}", base))
    return "\n".join(lines) + "\n"


def ranges_block() -> str:
    """Coverage of the value ranges on both splits (kcprice.ranges), from the same run as the accuracy table."""
    m = _load("model.json")
    head = ("split", "range", "coverage", "median width", "coverage by price decile (lowest to highest)")
    lines = [_row(*head), _row(*["---"] * len(head))]
    for name in ("random", "temporal"):
        for k, r in m[name].get("ranges", {}).items():
            deciles = " ".join(f"{c:.0f}" for c in r["by_price_decile"])
            lines.append(
                _row(name, f"{float(k):.0%}", f"{r['coverage']:.1f}%", f"{r['median_relative_width']:.1f}%", deciles)
            )
    return "\n".join(lines) + "\n"


def quality_block() -> str:
    """The evaluation protocol's table (kcprice evaluate -> build/quality.json, copied by `make docs QUALITY=1`)."""
    q = _load("quality.json")
    models = ("kc-price", "hgb-default", "lgbm-location")
    head = ("splits", "model", "MAPE (sd)", "median APE", "within 5 / 10 / 20%", "R2", "MAPE gap, kc-price minus it")
    lines = [_row(*head), _row(*["---"] * len(head))]
    for kind, s in q["summary"].items():
        for model in models:
            m = s[model]
            gap = f"{s['gap_mape'][model]:+.2f}" if model in s["gap_mape"] else ""
            lines.append(
                _row(
                    f"{kind} ({len(s['splits'])})" if model == models[0] else "",
                    model,
                    f"{m['mape']['mean']:.2f}% ({m['mape']['sd']:.2f})",
                    f"{m['median_ape']['mean']:.2f}%",
                    " / ".join(f"{m[f'within_{k}']['mean']:.1f}%" for k in (5, 10, 20)),
                    f"{m['r2']['mean']:.3f}",
                    gap,
                )
            )
    lines.append("")
    lines.append(_row("goal", "kc-price", "goal", "best yardstick", "met"))
    lines.append(_row(*["---"] * 5))
    for name, g in q["goals"].items():
        lines.append(
            _row(
                name,
                f"{g['kc-price']:.2f}%",
                f"<= {g['goal']:.2f}%",
                f"{g['best_yardstick']:.2f}%",
                "yes" if g["met"] else "no",
            )
        )
    cover = []
    for name, row in q["splits"].items():
        for k, r in row["kc-price"]["ranges"].items():
            cover.append(f"{name} {float(k):.0%}: {r['coverage']:.1f}%")
    lines.append("")
    lines.append(
        f"Range coverage on each split's test sales: {'; '.join(cover)}. {q['n_sales']:,} sales; "
        f"the run took {q['seconds'] / 60:.0f} min."
    )
    return "\n".join(lines) + "\n"


def times_block() -> str:
    t = _load("test-times.json")

    def mins(s: int) -> str:
        return f"{s // 60} min {s % 60:02d} s"

    return (
        f"Last measured `make test` on a fresh clone ({t['cores']} cores): {mins(t['total'])} in all: lint and type "
        f"checks {mins(t['lint'])}, the tests {mins(t['tests'])}, `sam validate`, `sam build` and the size and "
        f"smoke checks {mins(t['build'])}. {t.get('note', '')}".rstrip()
        + "\n"
    )


BLOCKS: dict[str, Callable[[], str]] = {
    "demo": demo_block,
    "bench": bench_block,
    "model": model_block,
    "ranges": ranges_block,
    "test-times": times_block,
    "quality": quality_block,
}


def render(text: str) -> str:
    def one(m: re.Match) -> str:
        name = m.group("name")
        if name not in BLOCKS:
            raise KeyError(f"unknown generated block {name!r}")
        return m.group(1) + BLOCKS[name]() + m.group(4)

    return BLOCK.sub(one, text)


def stale() -> list[str]:
    return [str(p.relative_to(ROOT)) for p in PAGES if p.exists() and render(p.read_text()) != p.read_text()]


def refresh_demo() -> None:
    """The demo story on a fresh local stack of its own: what a user sees after `make local` + `make demo`."""
    from kclocal.demo import run_story
    from kclocal.stack import LocalStack

    lines: list[str] = []
    folder = Path(tempfile.mkdtemp(prefix="kclocal-docs-"))
    stack = LocalStack(0, 0, {"ModelTtlSeconds": "1"}, say=lambda _: None, state_dir=folder / "state").start()
    try:
        stack.seed()
        t0 = time.monotonic()
        run_story(stack.bridge.url, stack.endpoint, stack.spec.bucket, stack.spec.table, say=lines.append)
        lines.append(f"(the story took {time.monotonic() - t0:.0f} s)")
    finally:
        stack.stop()
        shutil.rmtree(folder, ignore_errors=True)
    # Ports and times of day differ per run; everything else is deterministic.
    (DATA / "demo.txt").write_text("\n".join(lines) + "\n")


def refresh_model() -> None:
    from kcprice.dataset import read_sales
    from kcprice.training import evaluate

    sales, _ = read_sales((ROOT / "data" / "kc_house_data.csv").read_bytes())
    assert sales is not None
    (DATA / "model.json").write_text(json.dumps(evaluate(sales, with_baseline=True), indent=2) + "\n")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="fail if a generated block is stale")
    ap.add_argument("--demo", action="store_true", help="run the demo on a fresh local stack (about 2 minutes)")
    ap.add_argument("--model", action="store_true", help="train on both splits (about a minute)")
    ap.add_argument("--bench", action="store_true", help="take build/bench.json from the last `make bench`")
    ap.add_argument("--times", action="store_true", help="take build/test-times.json from the last `make test`")
    ap.add_argument("--quality", action="store_true", help="take build/quality.json from the last `make quality`")
    args = ap.parse_args(argv)
    if args.check:
        if bad := stale():
            print(f"stale generated blocks in {', '.join(bad)}: run `make docs`", file=sys.stderr)
            return 1
        return 0
    DATA.mkdir(parents=True, exist_ok=True)
    if args.demo:
        refresh_demo()
    if args.model:
        refresh_model()
    if args.bench:
        shutil.copy(ROOT / "build" / "bench.json", DATA / "bench.json")
    if args.times:
        shutil.copy(ROOT / "build" / "test-times.json", DATA / "test-times.json")
    if args.quality:
        shutil.copy(ROOT / "build" / "quality.json", DATA / "quality.json")
    for page in PAGES:
        if page.exists():
            page.write_text(render(page.read_text()))
    print("rendered " + ", ".join(str(p.relative_to(ROOT)) for p in PAGES if p.exists()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
