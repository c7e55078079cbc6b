import json

import pytest

from kcprice.cli import main


def test_train_then_predict(tmp_path, kc_bytes, house, capsys):
    csv = tmp_path / "sales.csv"
    csv.write_bytes(b"\n".join(kc_bytes.split(b"\n")[:3001]) + b"\n")
    assert main(["train", str(csv), "--out", str(tmp_path / "m"), "--no-eval"]) == 0
    version = json.loads(capsys.readouterr().out)["version"]
    houses = tmp_path / "houses.json"
    houses.write_text(json.dumps([house, house]))
    assert main(["predict", str(houses), "--model", str(tmp_path / "m" / "model.npz")]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["model_version"] == version
    assert len(out["predictions"]) == 2 and out["predictions"][0]["price"] > 0


def test_validate_reports_bad_file(tmp_path, capsys):
    bad = tmp_path / "bad.csv"
    bad.write_text("id,price\n1,2\n")
    assert main(["validate", str(bad)]) == 1
    assert json.loads(capsys.readouterr().out)["problems"][0]["code"] == "missing_columns"


def test_predict_rejects_bad_house(tmp_path, house, capsys):
    house["zipcode"] = 12345
    f = tmp_path / "h.json"
    f.write_text(json.dumps({"houses": [house]}))
    assert main(["predict", str(f), "--model", "unused.npz"]) == 2
    assert "zipcode" in capsys.readouterr().err


def test_operator_commands_say_what_is_missing(monkeypatch, capsys):
    from kcprice.cli import OUTPUT_VARIABLES, main

    for var in OUTPUT_VARIABLES.values():
        monkeypatch.delenv(var, raising=False)
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    for argv, variable in (
        (["failures", "list"], "KCPRICE_FAILURE_QUEUE_URL"),
        (["uploads", "list"], "KCPRICE_BUCKET"),
        (["precompute", "run"], "KCPRICE_PRECOMPUTE_FUNCTION"),
        (["models", "list"], "KCPRICE_BUCKET"),
    ):
        with pytest.raises(SystemExit, match=variable):
            main(argv)
