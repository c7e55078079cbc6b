"""Size budget of the built bundle: fail when a function plus its layers grows past its limit (unzipped)."""

from __future__ import annotations

import sys
from pathlib import Path

BUDGET_MB = {  # function -> (layers, budget in MB)
    "PredictFunction": (["ModelLayer"], 60.0),
    "PrecomputeFunction": (["ModelLayer"], 60.0),
    "RetrainFunction": (["ModelLayer", "TrainLayer"], 250.0),  # Lambda's hard limit, unzipped
    "PreTrafficHookFunction": (["ModelLayer"], 60.0),
    # Not on a latency path: the layer + pg8000 from its own requirements.txt, well under Lambda's 250 MB.
    "IngestFunction": (["ModelLayer"], 70.0),
}


def tree_mb(path: Path) -> float:
    if not path.is_dir() or not any(path.iterdir()):
        raise SystemExit(f"{path} is missing or empty: run `sam build` first")
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 1e6


def measure(build: Path) -> dict[str, dict]:
    out = {}
    for fn, (layers, budget) in BUDGET_MB.items():
        parts = {name: tree_mb(build / name) for name in [fn, *layers]}
        out[fn] = {"parts_mb": parts, "total_mb": sum(parts.values()), "budget_mb": budget}
    return out


def main(argv: list[str]) -> int:
    build = Path(argv[0] if argv else ".aws-sam/build")
    failed = False
    for fn, m in measure(build).items():
        ok = m["total_mb"] <= m["budget_mb"]
        failed |= not ok
        parts = " + ".join(f"{k} {v:.1f}" for k, v in m["parts_mb"].items())
        print(f"{'ok  ' if ok else 'OVER'} {fn:20s} {m['total_mb']:6.1f} MB <= {m['budget_mb']:.0f} MB  ({parts})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
