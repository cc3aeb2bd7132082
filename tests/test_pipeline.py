import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ogdash.core.errors import OgdashError
from ogdash.data import moons
from ogdash.models import ModelSpec
from ogdash.pipeline import ScanSettings, holdout_validation, scan, train_model
from ogdash.retrain import trim, trim_and_retrain


def test_scan_finds_most_moons_flips():
    s = moons(0)
    res = scan(s, ModelSpec("mlp"), ScanSettings("iforest", 0.08, seed=0))
    assert res.flags.sum() == 20
    assert res.detection["accuracy"] > 0.9  # flagged-vs-flipped over all 250 samples
    assert res.detection["auroc"] > 0.85
    assert res.scores.shape == (250,)


def test_same_seed_same_initialisation_and_untouched_test():
    s = moons(1)
    spec = ModelSpec("mlp", epochs=50)
    a = train_model(spec, s.train, seed=4)
    b = train_model(spec, s.train, seed=4)
    assert all(np.array_equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    flipped = s.train.ids[s.train.noisy]
    rep = trim_and_retrain(s, spec, flipped, seeds=[0, 1])
    assert rep.n_removed == 20 and rep.removed_truly_noisy == 20
    assert rep.before.shape == (2,) and rep.per_class_after.shape == (2, 2)
    assert rep.after.mean() >= rep.before.mean() - 0.02


def test_trim_relabel_and_errors():
    s = moons(0)
    i = int(s.train.ids[0])
    t = trim(s, remove_ids=[int(s.train.ids[1])], relabel={i: 1 - int(s.train.y[0])})
    assert t.train.n == 249 and t.train.y[t.train.positions([i])[0]] == 1 - s.train.y[0]
    assert t.test is s.test
    with pytest.raises(OgdashError):
        trim(s, remove_ids=[10**9])
    with pytest.raises(OgdashError):
        trim(s, relabel={i: 5})


def test_holdout_validation_moves_samples():
    s = holdout_validation(moons(0), 0.1, seed=0)
    assert s.val.n == 25 and s.train.n == 225
    assert not set(s.val.ids) & set(s.train.ids)


@pytest.fixture
def moons_files(tmp_path):
    s = moons(2)
    np.savez(tmp_path / "train.npz", X=s.train.X, y=s.train.y, y_true=s.train.y_true)
    np.savez(tmp_path / "test.npz", X=s.test.X, y=s.test.y)
    return tmp_path


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "ogdash", *map(str, args)], capture_output=True, text=True, timeout=300)


def test_cli_scan_contract(moons_files):
    d = moons_files
    out = d / "scores.csv"
    r = run_cli("scan", "--train", d / "train.npz", "--test", d / "test.npz", "--model", "mlp", "--detector",
                "iforest", "--budget", "0.08", "--seed", "2", "--out", out, "--retrain", "--json", "--cache", d / "c")
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    for key in ("n_train", "n_flagged", "accuracy_before", "accuracy_after", "detection", "seconds"):
        assert key in res
    assert res["n_train"] == 250 and res["n_flagged"] == 20
    rows = {r["action"]: r for r in res["retrain"]["rows"]}
    assert list(rows) == ["none", "remove", "restored", "random"]  # moons' flips are known: restoring is measured
    assert rows["random"]["n_removed"] == rows["remove"]["n_removed"] == 20  # the control removes as many
    assert len(rows["none"]["accuracy_per_seed"]) == 3 and res["retrain"]["seeds"] == [2, 3, 4]
    assert res["accuracy_after"] == pytest.approx(rows["remove"]["accuracy_mean"])
    assert set(res["detection"]) >= {"precision", "recall", "auroc", "accuracy"}
    df = pd.read_csv(out)
    assert list(df.columns) == ["id", "source", "given_label", "predicted_label", "score", "flagged", "true_label"]
    assert df["id"].tolist() == list(range(250)) and df["flagged"].sum() == 20
    assert df["source"].tolist() == [f"index {i}" for i in range(250)]  # where to find each sample in the file
    assert df.loc[df["flagged"] == 1, "score"].min() >= df.loc[df["flagged"] == 0, "score"].max()


def test_cli_retrain_compares_every_action_in_json(moons_files):
    d = moons_files
    r = run_cli("scan", "--train", d / "train.npz", "--test", d / "test.npz", "--model", "logreg", "--epochs", "50",
                "--budget", "0.1", "--retrain", "--action", "all", "--seeds", "3", "--json", "--cache", d / "c2")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)["retrain"]
    rows = {row["action"]: row for row in out["rows"]}
    assert {"none", "remove", "relabel", "auto", "restored", "random"} <= set(rows)
    assert all(r.startswith("random_") for r in set(rows) - {"none", "remove", "relabel", "auto", "restored", "random"})
    for fix in ("remove", "relabel", "auto"):  # each fix has a control of its kind: as many removals and relabels
        control = rows[rows[fix]["control"]]
        assert control["drawn"] == [rows[fix]["n_removed"], rows[fix]["n_relabelled"]]
        assert control["n_removed"] == rows[fix]["n_removed"] and control["n_relabelled"] <= rows[fix]["n_relabelled"]
    assert rows["relabel"]["n_removed"] == 0 and rows["relabel"]["n_relabelled"] > 0
    assert rows["auto"]["n_removed"] + rows["auto"]["n_relabelled"] <= 25
    assert set(out["verdicts"]) == {"remove", "relabel", "auto"}
    assert all(v.startswith(("Beat chance", "Did not beat chance")) for v in out["verdicts"].values())
    assert re.search(r"retraining: all \d+ runs at once", r.stderr)  # overall progress in words, as the page says
    text = run_cli("scan", "--train", d / "train.npz", "--test", d / "test.npz", "--model", "logreg", "--epochs", "50",
                   "--budget", "0.1", "--retrain", "--seeds", "3", "--cache", d / "c2").stdout
    assert "the trained model's test accuracy" in text  # each number names its baseline
    assert re.search(r"retrained on seeds 0-2 without changes \(the baseline\): test accuracy [\d.]+ ± [\d.]+", text)
    assert re.search(r"remove the flagged samples: test accuracy [\d.]+ \([+-][\d.]+ points against the baseline\)",
                     text)
    bad = run_cli("scan", "--train", d / "train.npz", "--model", "logreg", "--retrain", "--action", "shuffle")
    assert bad.returncode == 2 and "shuffle" in bad.stderr and bad.stderr.count("\n") == 1


def test_cli_scan_without_a_test_set_holds_out_a_share(moons_files):
    d = moons_files
    r = run_cli("scan", "--train", d / "train.npz", "--model", "logreg", "--epochs", "20", "--test-share", "0.2",
                "--json", "--no-cache")
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    assert res["test_held_out"] and res["n_test"] == 50 and res["n_train"] == 200


def test_cli_budget_auto_flags_the_suggested_budget(moons_files, capsys):
    from ogdash.cli.main import main
    from ogdash.detect.registry import RECOMMENDED

    d = moons_files
    code = main(["scan", "--train", str(d / "train.npz"), "--test", str(d / "test.npz"), "--model", "mlp",
                 "--budget", "auto", "--json", "--cache", str(d / "c")])
    assert code == 0
    res = json.loads(capsys.readouterr().out)
    assert res["detector"] == RECOMMENDED  # no --detector: the recommended default
    sb = res["suggested_budget"]
    assert set(sb) >= {"fraction", "low", "high", "level", "count", "source"}
    assert sb["low"] <= sb["fraction"] <= sb["high"] and 0 < sb["fraction"] < 0.5
    assert res["budget"] == pytest.approx(sb["fraction"]) and res["n_flagged"] == sb["count"]
    assert "auroc" in res["detection"]


@pytest.mark.parametrize("extra,needle", [
    (["--budget", "0"], "budget"),
    (["--budget", "1.5"], "budget"),
    (["--budget", "9999"], "budget"),
    (["--budget", "abc"], "budget"),
    (["--model", "resnet"], "model"),
    (["--hidden", "16,x"], "hidden"),
    (["--detector", "ocsvm", "--val", "missing.npz"], "not found"),
])
def test_cli_bad_input_is_one_line(moons_files, capsys, extra, needle):
    from ogdash.cli.main import main

    d = moons_files
    args = ["scan", "--train", str(d / "train.npz"), "--test", str(d / "test.npz"), "--model", "mlp",
            "--epochs", "5", "--no-cache", *extra]
    try:
        code = main(args)
    except SystemExit as e:  # argparse's own errors
        code = e.code
    err = capsys.readouterr().err
    assert code == 2
    assert needle in err and len(err.strip().splitlines()) == 1 and err.startswith("error:")


def test_cli_bad_file_in_a_real_process(moons_files):
    d = moons_files
    np.savez(d / "nan.npz", X=np.full((5, 2), np.nan), y=np.arange(5) % 2)
    r = run_cli("scan", "--train", d / "nan.npz", "--test", d / "test.npz", "--model", "mlp")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.startswith("error:") and "NaN" in r.stderr and len(r.stderr.strip().splitlines()) == 1


SAMPLES = Path(__file__).resolve().parents[1] / "sample_data"


def test_cli_scans_an_image_folder_and_names_each_file(tmp_path):
    """The CLI reads what the dashboard reads, through the same DataSpec: an image folder and its test folder."""
    out = tmp_path / "scores.csv"
    r = run_cli("scan", "--train", SAMPLES / "digits_folder", "--test", SAMPLES / "digits_test", "--model", "cnn",
                "--size", "16", "--epochs", "5", "--budget", "12", "--out", out, "--json", "--cache", tmp_path / "c")
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    assert res["n_flagged"] == 12 and res["test_held_out"] is False
    df = pd.read_csv(out)
    files = sorted(str(p.relative_to(SAMPLES / "digits_folder")) for p in (SAMPLES / "digits_folder").rglob("*.png"))
    assert sorted(df["source"]) == files  # every image scored, each row naming its file
    assert df["flagged"].sum() == 12


def test_cli_refuses_a_one_class_folder_in_one_line(tmp_path):
    from PIL import Image

    (tmp_path / "only" / "cats").mkdir(parents=True)
    for i in range(6):
        Image.new("L", (8, 8), color=i * 40).save(tmp_path / "only" / "cats" / f"{i}.png")
    r = run_cli("scan", "--train", tmp_path / "only", "--model", "cnn", "--epochs", "1")
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
    assert "at least two classes" in r.stderr and "Traceback" not in r.stderr


def test_cli_scales_feature_columns_unless_told_not_to(moons_files):
    from ogdash.cli.choices import model_choice
    from ogdash.cli.main import build_parser

    on = build_parser().parse_args(["scan", "--train", str(moons_files / "train.npz"), "--model", "mlp"])
    off = build_parser().parse_args(["scan", "--train", str(moons_files / "train.npz"), "--model", "mlp", "--no-scale"])
    assert model_choice(on).scale is True and model_choice(off).scale is False
