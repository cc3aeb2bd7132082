"""The everyday flow on MNIST-5k with 20% uniform label noise and the default CNN.

Prints, from one run on this machine:
1. wall time of the first run (load + train + extract + score + PCA) with an empty cache;
2. time to re-score with another detector, and to re-flag at another budget;
3. the same through the dashboard (AppTest): a detector change and a budget change re-render;
4. detection AUROC and precision at a 20% budget for every detector;
5. test accuracy before/after trimming each detector's flags, mean ± std over 3 seeds, beside an
   oracle trim (exactly the flipped samples), a random trim, and every flipped label restored.
Usage: python benchmarks/mnist_flow.py [--seeds 3]
"""
import argparse
import os
import tempfile
import time

import numpy as np

os.environ.setdefault("OGDASH_CACHE", tempfile.mkdtemp(prefix="ogdash-bench-"))

from dashboard.nav import ROOT  # noqa: E402
from ogdash.core.cache import DiskCache  # noqa: E402
from ogdash.data import mnist5k  # noqa: E402
from ogdash.detect.flags import flag  # noqa: E402
from ogdash.detect.metrics import detection_metrics  # noqa: E402
from ogdash.detect.scoring import score  # noqa: E402
from ogdash.engine.layout2d import layout_2d  # noqa: E402
from ogdash.models import ModelSpec  # noqa: E402
from ogdash.pipeline import gradients, train_model  # noqa: E402
from ogdash.retrain import trim_and_retrain  # noqa: E402


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def app_rerender_seconds():
    from streamlit.testing.v1 import AppTest

    from ogdash.data import DataSpec

    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=600)
    at.session_state["data_spec"] = DataSpec("builtin", name="mnist5k", seed=0, noise_rate=0.2, noise_kind="uniform")
    at.run()
    at.switch_page("views/data.py").run()
    next(b for b in at.button if b.label == "Train model").click().run()
    at.switch_page("views/gradient_space.py").run()
    extract = next(b for b in at.button if b.label == "Extract gradients")
    if not extract.disabled:  # disabled when the gradients are in the disk cache already
        extract.click().run()
    _, t_budget = timed(lambda: at.slider[0].set_value(0.2).run())
    _, t_detector = timed(lambda: at.selectbox[1].set_value("l2").run())
    _, t_back = timed(lambda: at.selectbox[1].set_value("iforest").run())
    assert not at.exception
    return t_budget, t_detector, t_back


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=3)
    args = ap.parse_args()
    cache = DiskCache()
    spec = ModelSpec("cnn")
    t0 = time.perf_counter()
    splits, t_load = timed(lambda: mnist5k(seed=0, noise_rate=0.2, noise_kind="uniform", val_fraction=0.1))
    model, t_train = timed(lambda: train_model(spec, splits.train, 0, cache))
    grads, t_grads = timed(lambda: gradients(model, splits.train, cache=cache))
    val = gradients(model, splits.val, cache=cache)
    scores, t_score = timed(lambda: score(grads, "iforest", val))
    _, t_pca = timed(lambda: layout_2d(grads, "pca"))
    total = time.perf_counter() - t0
    print(f"MNIST-5k, 20% uniform noise: {splits.train.n} train / {splits.val.n} val / {splits.test.n} test")
    print(f"first run {total:.1f} s = load {t_load:.1f} + train {t_train:.1f} + gradients {t_grads:.2f} "
          f"+ IsolationForest {t_score:.2f} + PCA {t_pca:.2f}")
    _, t_l2 = timed(lambda: score(grads, "l2", val))
    _, t_flag = timed(lambda: flag(scores, 0.2))
    print(f"re-score with L2 {t_l2 * 1000:.1f} ms; re-flag at another budget {t_flag * 1000:.2f} ms")
    t_budget, t_detector, t_back = app_rerender_seconds()
    print(f"dashboard re-render: budget change {t_budget:.2f} s, detector change (new scores) {t_detector:.2f} s, "
          f"back to a detector seen before {t_back:.2f} s")

    noisy = splits.train.noisy
    print(f"\ndetection at a 20% budget (true noise rate {noisy.mean():.1%}), and test accuracy over seeds 0..{args.seeds - 1}")
    print(f"{'detector':14} {'AUROC':>7} {'precision':>9} {'before':>15} {'after':>15}")
    # the paper's four, the recommended detector, and two references: the true flips (an oracle) and a random 20%
    rng = np.random.default_rng(0)
    rows = [(name, score(grads, name, val)) for name in ("iforest", "l1", "l2", "ocsvm", "heldout_margin")]
    rows += [("oracle", noisy.astype(float)), ("random", rng.permutation(len(noisy)).astype(float))]
    for name, s in rows:
        flags = flag(s, 0.2)
        m = detection_metrics(flags, s, noisy)
        rep = trim_and_retrain(splits, spec, splits.train.ids[flags], seeds=list(range(args.seeds)), cache=cache)
        b, a = rep.before, rep.after
        print(f"{name:14} {m['auroc']:7.3f} {m['precision']:9.3f} {b.mean():8.3f} ± {b.std():.3f} "
              f"{a.mean():8.3f} ± {a.std():.3f}")
    # what the noise costs: the same runs with every flipped label restored (nothing removed)
    truth = {int(i): int(t) for i, t, bad in zip(splits.train.ids, splits.train.y_true, noisy) if bad}
    rep = trim_and_retrain(splits, spec, relabel=truth, seeds=list(range(args.seeds)), cache=cache)
    print(f"{'true labels':14} {'':7} {'':9} {rep.before.mean():8.3f} ± {rep.before.std():.3f} "
          f"{rep.after.mean():8.3f} ± {rep.after.std():.3f}   (no trim: every flipped label restored)")


if __name__ == "__main__":
    main()
