"""The gradient engine at scale, measured in one run on this machine.

1. Closed-form last-layer extraction vs a plain forward pass and vs a per-sample
   autograd loop, on torchvision's ResNet-18 with 32x32 inputs.
2. Scoring 50,000 samples with CIFAR-10-sized (10 x 512) and CIFAR-100-sized
   (100 x 512) last layers: from factors (ogdash) against the paper's dense
   pipeline (materialise the gradients, scikit-learn SparseRandomProjection,
   then the detector). Seconds and peak memory per detector; each variant runs in
   its own process so peak memory is its own. The held-out margin (the default
   detector) refits the last layer on its inputs, so it has the factored path only.
3. Detection quality: on MNIST-5k with 20% injected noise, AUROC from factored /
   sketched gradients against the dense computation.
4. End to end at scale: a tabular set of n x 128 features, 100 classes (scikit-learn's
   make_classification), 20% uniform label noise, a clean test set of n / 5, through
   ``ogdash.pipeline.scan`` with the suggested budget: seconds per stage, test
   accuracy, AUROC of the default detector, L2 and IsolationForest, and the suggested
   budget (estimate, interval, reliable or not) against the true noise rate.
5. A million samples from a features file: ``ogdash scan --model logreg --budget auto --out`` in a child
   process on an uncompressed ``.npz`` of n x 256 float32 features (Gaussian classes, written in chunks),
   1,000 classes, 20% uniform noise, a clean test file of n / 10: wall time, each stage, the peak resident
   memory of the process (``ru_maxrss``: anonymous and file-backed pages together), AUROC and the suggested
   budget against the truth. ``--sizes`` gives the cost-per-sample curve (default 50k, 200k, 1M).
6. ImageNet's shape: 1,281,167 x 2,048 features (10 GB of float32, generated on disk in chunks), 1,000
   classes, 20% noise: a logistic-regression head trained for ``--head-steps`` steps (timed apart), then
   scoring from the cached features: gradients, held-out probabilities, scores, suggested budget, flags,
   each stage timed, and the peak memory of the process.
Usage: python benchmarks/scale.py [--n 50000] [--part 1,2,3,4] [--skip-dense-cifar100] [--quality-only]
       [--steps 0] [--cache]
       python benchmarks/scale.py --part 5 [--sizes 50000,200000,1000000] [--home /tmp/ogdash-scale]
       python benchmarks/scale.py --part 6 [--rows 1281167] [--head-steps 2000] [--home /tmp/ogdash-scale]
Every run prints the machine's load (``uptime``) before and after; big parts refuse to start when less
memory is available than they need (``MemAvailable``).
"""
import argparse
import json
import subprocess
import sys
import time

import numpy as np

N_VAL = 5000
PROJ = 256


def _status_mb(field: str) -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field)) / 1024


def _status_mb_meminfo(field: str) -> float:
    with open("/proc/meminfo") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field)) / 1024


def reset_peak() -> float:
    """Reset the kernel's peak-RSS mark (Linux) and return the current RSS in MB."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    return _status_mb("VmRSS:")


def peak_mb() -> float:
    return _status_mb("VmHWM:")


def factors(n, K, H, seed):
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(n, K)) * 2
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    y = rng.integers(0, K, n)
    e = p.copy()
    e[np.arange(n), y] -= 1
    h = np.maximum(rng.normal(size=(n, H)), 0)
    return e.astype(np.float32), h.astype(np.float32)


def one_variant(args):
    """Run in a child process: time one (size, detector, path) and report peak memory above the start."""
    from ogdash.detect.scoring import score
    from ogdash.engine.gradients import GradientSet

    K, H, n, detector, path = args["K"], args["H"], args["n"], args["detector"], args["path"]
    e, h = factors(n, K, H, 0)
    ev, hv = factors(N_VAL, K, H, 1)
    mk = lambda e, h: GradientSet(np.arange(len(e)), np.zeros((len(e), K)), np.zeros(len(e)), "fc",  # noqa: E731
                                  errors=e, acts=h, bias=True)
    train, val = mk(e, h), mk(ev, hv)
    base = reset_peak()
    t = time.perf_counter()
    if path == "factored":
        score(train, detector, val, seed=0, labels=np.argmin(e, 1))  # the given label: e's one negative entry
    else:  # the paper's pipeline: dense gradients, sparse random projection, detector
        from sklearn.ensemble import IsolationForest
        from sklearn.random_projection import SparseRandomProjection
        from sklearn.svm import OneClassSVM

        G = train.matrix()
        if detector in ("l1", "l2"):
            np.linalg.norm(G, ord=1 if detector == "l1" else 2, axis=1)
        else:
            rp = SparseRandomProjection(n_components=PROJ, random_state=0).fit(G[:1])
            Z = rp.transform(G)
            if detector == "iforest":
                f = IsolationForest(n_estimators=100, random_state=0).fit(Z)
                f.score_samples(Z)
            else:
                OneClassSVM(gamma="scale", nu=0.1).fit(rp.transform(val.matrix())).decision_function(Z)
    return {"seconds": time.perf_counter() - t, "peak_mb": peak_mb() - base}


def child(params):
    out = subprocess.run([sys.executable, __file__, "--child", json.dumps(params)], capture_output=True, text=True)
    if out.returncode != 0:
        return {"error": out.stderr.strip().splitlines()[-1] if out.stderr else "failed"}
    return json.loads(out.stdout.strip().splitlines()[-1])


def extraction():
    import torch
    import torchvision

    from ogdash.data import make_dataset
    from ogdash.engine.gradients import last_layer_gradients
    from ogdash.models import per_sample_loss
    from ogdash.models.devices import prepare, to_input

    n, chunk = 2048, 256
    rng = np.random.default_rng(0)
    X = rng.random((n, 3, 32, 32), dtype=np.float32)
    y = rng.integers(0, 10, n)
    ds = make_dataset("bench", X, y, tuple(map(str, range(10))))
    model = prepare(torchvision.models.get_model("resnet18", num_classes=10), "cpu", True)

    def forward():
        with torch.no_grad():
            for s in range(0, n, chunk):
                model(to_input(X[s:s + chunk], "cpu"))

    def best(fn, k=2):
        ts = []
        for _ in range(k):
            t = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t)
        return min(ts)

    forward()
    t_fwd = best(forward)
    t_closed = best(lambda: last_layer_gradients(model, ds, chunk_size=chunk, device="cpu"))
    loop_n = 64
    t0 = time.perf_counter()
    for i in range(loop_n):
        model.zero_grad()
        per_sample_loss(model(to_input(X[i:i + 1], "cpu")), torch.as_tensor(y[i:i + 1]))[0].backward()
    t_loop = (time.perf_counter() - t0) * n / loop_n
    print(f"1. ResNet-18, {n} inputs 3x32x32, {torch.get_num_threads()} threads: forward {t_fwd:.2f} s, "
          f"closed form {t_closed:.2f} s -> throughput {t_fwd / t_closed:.2f}x of a forward pass (target >= 0.95); "
          f"{t_loop / t_closed:.0f}x faster than a per-sample .backward() loop ({t_loop:.0f} s extrapolated from {loop_n})")


def scoring(n, skip_dense_big):
    print(f"\n2. Scoring {n} samples ({N_VAL} validation samples for OneClassSVM; projections to {PROJ} dims)")
    print(f"{'last layer':12} {'detector':14} {'ogdash (factors)':>24} {'dense pipeline':>24} {'speed-up':>9}")
    for K, label in ((10, "10 x 512"), (100, "100 x 512")):
        for det in ("l1", "l2", "iforest", "ocsvm", "heldout_margin"):
            f = child({"K": K, "H": 512, "n": n, "detector": det, "path": "factored"})
            if det == "heldout_margin":
                d = {"error": "n/a (factors only)"}
            elif K == 100 and skip_dense_big:
                d = {"error": "skipped"}
            else:
                d = child({"K": K, "H": 512, "n": n, "detector": det, "path": "dense"})
            fmt = lambda r: r.get("error") or f"{r['seconds']:7.2f} s {r['peak_mb']:7.0f} MB"  # noqa: E731
            ratio = f"{d['seconds'] / f['seconds']:8.1f}x" if "seconds" in f and "seconds" in d else ""
            print(f"{label:12} {det:14} {fmt(f):>24} {fmt(d):>24} {ratio:>9}")


def quality():
    from sklearn.ensemble import IsolationForest
    from sklearn.metrics import roc_auc_score
    from sklearn.svm import OneClassSVM

    from ogdash.core.cache import DiskCache
    from ogdash.data import mnist5k
    from ogdash.detect.scoring import score
    from ogdash.engine.gradients import GradientSet
    from ogdash.models import ModelSpec
    from ogdash.pipeline import gradients, train_model

    splits = mnist5k(seed=0, noise_rate=0.2, val_fraction=0.1)
    cache = DiskCache()
    model = train_model(ModelSpec("cnn"), splits.train, 0, cache)
    g, v = gradients(model, splits.train, cache=cache), gradients(model, splits.val, cache=cache)
    noisy = splits.train.noisy
    M, V = g.matrix(), v.matrix()
    print(f"\n3. MNIST-5k, 20% noise, {g.dim}-dim last-layer gradients: AUROC, factored/sketched vs dense")
    for name, ours, dense in [
        ("l2", score(g, "l2"), np.linalg.norm(M, axis=1)),
        ("l1", score(g, "l1"), np.abs(M).sum(1)),
        ("ocsvm", score(g, "ocsvm", v), -OneClassSVM(gamma="scale", nu=0.1).fit(V).decision_function(M)),
    ]:
        a, b = roc_auc_score(noisy, ours), roc_auc_score(noisy, dense)
        print(f"   {name:8} factored {a:.4f}   dense {b:.4f}   difference {a - b:+.4f}")
    # IsolationForest is itself random: compare means over five forest seeds (and one sketch / projection each)
    from sklearn.random_projection import SparseRandomProjection

    def forest(X, s):
        return roc_auc_score(noisy, -IsolationForest(n_estimators=100, random_state=s).fit(X).score_samples(X))
    ours = [roc_auc_score(noisy, score(GradientSet(g.ids, g.probs, g.loss, g.layer, dense=g.sketch(PROJ, s),
                                                   projected=True), "iforest", seed=s)) for s in range(5)]
    raw = [forest(M, s) for s in range(5)]
    srp = [forest(SparseRandomProjection(PROJ, random_state=s).fit_transform(M), s) for s in range(5)]
    print(f"   iforest  sketched {np.mean(ours):.4f} ± {np.std(ours):.4f}   dense + SparseRandomProjection "
          f"{np.mean(srp):.4f} ± {np.std(srp):.4f} (difference {np.mean(ours) - np.mean(srp):+.4f})   "
          f"dense, not projected {np.mean(raw):.4f} ± {np.std(raw):.4f} (difference {np.mean(ours) - np.mean(raw):+.4f})")
    print(f"   (mean ± std over seeds 0-4 of the forest and of the sketch / projection, {PROJ} dims)")


def tabular(n, steps, use_cache):
    from sklearn.datasets import make_classification
    from sklearn.metrics import roc_auc_score

    from ogdash.core.cache import DiskCache
    from ogdash.data.images import split_with_noise
    from ogdash.detect.registry import RECOMMENDED
    from ogdash.detect.scoring import score
    from ogdash.models import ModelSpec
    from ogdash.pipeline import ScanSettings, scan

    n_test = n // 5
    X, y = make_classification(n_samples=n + n_test, n_features=128, n_informative=64, n_classes=100,
                               n_clusters_per_class=1, class_sep=2.0, random_state=0)
    splits = split_with_noise("tabular", X, y, tuple(map(str, range(100))), test_fraction=n_test / (n + n_test),
                              noise_rate=0.2, seed=0)
    spec = ModelSpec("mlp", hidden=(512,), steps=steps or None)
    print(f"\n4. Tabular, {splits.train.n} x 128, 100 classes, 20% uniform noise, {splits.test.n} clean test samples; "
          f"MLP (512,), {spec.total_steps(splits.train.n)} steps; scan with the suggested budget"
          + (" (model from the disk cache)" if use_cache else ""))
    res = scan(splits, spec, ScanSettings(budget="auto"), cache=DiskCache() if use_cache else None)
    noisy = splits.train.noisy
    print("   seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in res.seconds.items())
          + f"; test accuracy {res.accuracy_before:.3f}")
    aurocs = {RECOMMENDED: roc_auc_score(noisy, res.scores)}
    for det in ("l2", "iforest"):
        t = time.perf_counter()
        aurocs[det] = roc_auc_score(noisy, score(res.grads, det, seed=0))
        aurocs[det + " seconds"] = time.perf_counter() - t
    print("   AUROC: " + ", ".join(f"{k} {v:.3f}" for k, v in aurocs.items() if "seconds" not in k)
          + " (scoring " + ", ".join(f"{k.split()[0]} {v:.1f} s" for k, v in aurocs.items() if "seconds" in k) + ")")
    b = res.suggested_budget
    print(f"   suggested budget {b.fraction:.1%} ({b.level:.0%} interval {b.low:.1%}–{b.high:.1%}; own error "
          f"{b.own_error:.1%}; {'reliable' if b.reliable else 'UNRELIABLE'}) against the true rate {noisy.mean():.1%}")
    if b.warning:
        print(f"   {b.warning}")


# ---------------------------------------------------------------- 5 and 6: a million samples, ImageNet's shape

SPREAD = {256: 3.0, 2048: 8.6}  # noise per feature around the class centres: about 90% clean linear accuracy


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def write_features(path, n: int, d: int, classes: int, noise: float, seed: int, centres=None):
    """An uncompressed ``.npz`` (as ``numpy.savez`` writes it) of ``X`` (n, d) float32 around seeded Gaussian class
    centres, ``y`` (a ``noise`` share flipped uniformly to another class), ``y_true`` and ``classes``; X is
    streamed into the zip in chunks, never whole in memory. Returns the centres (the test file reuses them)."""
    import zipfile

    rng = np.random.default_rng(seed)
    if centres is None:
        centres = rng.normal(0, 1, (classes, d)).astype(np.float32)
    y_true = rng.integers(0, classes, n)
    y = y_true.copy()
    flip = rng.random(n) < noise
    y[flip] = (y[flip] + rng.integers(1, classes, int(flip.sum()))) % classes
    spread, step = SPREAD.get(d, 3.0), max(1, (1 << 24) // d)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED, allowZip64=True) as z:
        with z.open("X.npy", "w", force_zip64=True) as f:
            np.lib.format.write_array_header_2_0(f, {"descr": "<f4", "fortran_order": False, "shape": (n, d)})
            for s in range(0, n, step):
                rows = y_true[s:s + step]
                X = centres[rows] + spread * rng.standard_normal((len(rows), d), dtype=np.float32)
                f.write(X.tobytes())
        for name, arr in (("y", y), ("y_true", y_true), ("classes", np.array([f"c{c}" for c in range(classes)]))):
            with z.open(f"{name}.npy", "w", force_zip64=True) as f:
                np.lib.format.write_array(f, arr, allow_pickle=False)
    return centres


def need_memory(gb: float, what: str) -> bool:
    available = _status_mb_meminfo("MemAvailable:") / 1024
    if available < gb:
        print(f"   skipped {what}: {available:.1f} GB available, {gb:.0f} GB needed")
        return False
    return True


def million(sizes, home, d=256, classes=1000, noise=0.2):
    """Part 5: the whole ``ogdash scan --budget auto`` on features files, one child process per size."""
    import resource
    import shutil
    from pathlib import Path

    import pandas as pd
    from sklearn.metrics import roc_auc_score

    home = Path(home)
    home.mkdir(parents=True, exist_ok=True)
    print(f"\n5. ogdash scan --model logreg --budget auto --out, n x {d} float32 features (uncompressed .npz, "
          f"memory-mapped), {classes} classes, {noise:.0%} uniform noise, a clean test file of n/10; {uptime()}")
    rows = []
    for n in sizes:
        if not need_memory(10, f"n = {n:,}"):
            continue
        train, test, cache, out = (home / f"train_{n}.npz", home / f"test_{n}.npz", home / f"cache_{n}",
                                   home / f"scores_{n}.csv")
        if not train.exists():
            t = time.perf_counter()
            centres = write_features(train, n, d, classes, noise, seed=0)
            write_features(test, n // 10, d, classes, 0.0, seed=1, centres=centres)
            print(f"   wrote {train.name} ({train.stat().st_size / 2**30:.2f} GB) in {time.perf_counter() - t:.0f} s")
        shutil.rmtree(cache, ignore_errors=True)
        before = uptime()
        t = time.perf_counter()
        run = subprocess.run([sys.executable, "-m", "ogdash", "scan", "--train", str(train), "--test", str(test),
                              "--model", "logreg", "--budget", "auto", "--out", str(out), "--json", "--cache",
                              str(cache)], capture_output=True, text=True)
        wall = time.perf_counter() - t
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20  # GB, the largest child so far
        if run.returncode != 0:
            print(f"   n = {n:,}: failed after {wall:.0f} s: {run.stderr.strip().splitlines()[-1:]}")
            continue
        res = json.loads(run.stdout.strip().splitlines()[-1])
        scores = pd.read_csv(out, usecols=["score", "flagged", "given_label", "true_label"])
        noisy = (scores["given_label"] != scores["true_label"]).to_numpy()
        auroc = roc_auc_score(noisy, scores["score"])
        b = res["suggested_budget"]
        rows.append((n, wall, peak, res, auroc, b, noisy.mean(), len(scores), before))
        sec = res["seconds"]
        print(f"   n = {n:,}: {wall:.0f} s, peak {peak:.2f} GB; " + ", ".join(f"{k} {v:.1f}" for k, v in sec.items())
              + f"; test accuracy {res['accuracy_before']:.3f}; AUROC {auroc:.3f}; suggested {b['fraction']:.1%} "
              f"({b['low']:.1%}-{b['high']:.1%}, {'reliable' if b['reliable'] else 'UNRELIABLE'}) against "
              f"{noisy.mean():.1%}; --out {len(scores):,} rows; load before: {before.split('load average:')[-1]}")
        print(f"     cache on disk: {sum(p.stat().st_size for p in cache.rglob('*') if p.is_file()) / 2**30:.1f} GB")
        shutil.rmtree(cache, ignore_errors=True)
    if rows:
        print("\n| n | wall | peak memory | load | train | gradients | held-out probabilities | score + budget | "
              "--out | µs per sample | AUROC | suggested budget (truth) |")
        print("|---|---|---|---|---|---|---|---|---|---|---|---|")
        for n, wall, peak, res, auroc, b, truth, _, before in rows:
            sec = res["seconds"]
            print(f"| {n:,} | {wall:.0f} s | {peak:.2f} GB | {sec.get('load', 0):.1f} s | {sec['train']:.0f} s | "
                  f"{sec['gradients']:.0f} s | {sec.get('probe', 0):.0f} s | {sec['score']:.1f} s | "
                  f"{sec.get('out', 0):.1f} s | {1e6 * wall / n:.0f} | {auroc:.3f} | {b['fraction']:.1%} "
                  f"[{b['low']:.1%}, {b['high']:.1%}] ({truth:.1%}) |")
    print(f"   {uptime()}")


def imagenet_child(args):
    """Run in a child process: train a head for ``head_steps`` steps, then time each scoring stage."""
    from ogdash.core.cache import DiskCache
    from ogdash.data.spec import DataSpec
    from ogdash.models import ModelSpec
    from ogdash.pipeline import Scan, ScanSettings

    scan = Scan(DataSpec.from_paths(args["train"], args["test"]), ModelSpec("logreg", steps=args["head_steps"]),
                ScanSettings(budget="auto"), DiskCache(args["cache"]))
    seconds = {}
    for name, stage in (("load", scan.splits), ("train the head", scan.model), ("gradients", scan.gradients),
                        ("held-out probabilities", scan.probabilities), ("scores", scan.scores),
                        ("suggested budget", scan.suggested_budget), ("flags", scan.flags),
                        ("test accuracy", scan.accuracy)):
        t = time.perf_counter()
        stage()
        seconds[name] = time.perf_counter() - t
        print(f"     {name}: {seconds[name]:.1f} s (peak so far {peak_mb() / 1024:.2f} GB)", file=sys.stderr,
              flush=True)
    b, det = scan.suggested_budget(), scan.detection()
    return {"seconds": seconds, "peak_gb": peak_mb() / 1024, "auroc": det["auroc"], "truth": det["n_noisy"] / scan.train.n,
            "budget": [b.fraction, b.low, b.high, b.reliable], "accuracy": scan.accuracy()}


def imagenet(rows, head_steps, home, d=2048, classes=1000, noise=0.2):
    """Part 6: scoring from cached features of ImageNet's shape, in a child process."""
    import shutil
    from pathlib import Path

    home = Path(home)
    home.mkdir(parents=True, exist_ok=True)
    train, test, cache = home / f"imagenet_{rows}.npz", home / f"imagenet_test_{rows}.npz", home / "cache_imagenet"
    print(f"\n6. ImageNet's shape: {rows:,} x {d} float32 features, {classes} classes, {noise:.0%} noise; logreg head "
          f"for {head_steps} steps, then scoring from the cached features; {uptime()}")
    if not need_memory(14, "ImageNet's shape"):
        return
    if not train.exists():
        t = time.perf_counter()
        centres = write_features(train, rows, d, classes, noise, seed=0)
        write_features(test, 50_000, d, classes, 0.0, seed=1, centres=centres)
        print(f"   wrote {train.name} ({train.stat().st_size / 2**30:.1f} GB) in {time.perf_counter() - t:.0f} s")
    shutil.rmtree(cache, ignore_errors=True)
    t = time.perf_counter()
    run = subprocess.run([sys.executable, __file__, "--imagenet-child", json.dumps(
        {"train": str(train), "test": str(test), "cache": str(cache), "head_steps": head_steps})],
        capture_output=True, text=True)
    wall = time.perf_counter() - t
    print(run.stderr.strip()[-3000:])
    if run.returncode != 0:
        print(f"   failed after {wall:.0f} s")
        return
    res = json.loads(run.stdout.strip().splitlines()[-1])
    sec = res["seconds"]
    scoring = sum(v for k, v in sec.items() if k not in ("load", "train the head", "test accuracy"))
    f, lo, hi, ok = res["budget"]
    print(f"   scoring (gradients to flags) {scoring:.0f} s; peak {res['peak_gb']:.2f} GB; head test accuracy "
          f"{res['accuracy']:.3f}; AUROC {res['auroc']:.3f}; suggested {f:.1%} ({lo:.1%}-{hi:.1%}, "
          f"{'reliable' if ok else 'UNRELIABLE'}) against {res['truth']:.1%}")
    print("| stage | seconds |\n|---|---|\n" + "\n".join(f"| {k} | {v:.1f} |" for k, v in sec.items()))
    print(f"   cache on disk: {sum(p.stat().st_size for p in cache.rglob('*') if p.is_file()) / 2**30:.1f} GB; {uptime()}")
    shutil.rmtree(cache, ignore_errors=True)


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        print(json.dumps(one_variant(json.loads(sys.argv[2]))))
        sys.exit()
    if len(sys.argv) > 2 and sys.argv[1] == "--imagenet-child":
        print(json.dumps(imagenet_child(json.loads(sys.argv[2]))))
        sys.exit()
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=50_000)
    ap.add_argument("--skip-dense-cifar100", action="store_true",
                    help="skip the dense CIFAR-100 baseline (peak ~19.6 GB at n=50,000; skipped by itself when less "
                         "memory is available)")
    ap.add_argument("--quality-only", action="store_true", help="only part 3 (detection quality)")
    ap.add_argument("--part", default="1,2,3,4", help="which parts to run, e.g. 2 or 2,4")
    ap.add_argument("--steps", type=int, default=0, help="part 4: MLP training steps (default 0: the default budget)")
    ap.add_argument("--cache", action="store_true", help="part 4: reuse the model and gradients from the disk cache")
    ap.add_argument("--sizes", default="50000,200000,1000000", help="part 5: training-set sizes")
    ap.add_argument("--rows", type=int, default=1_281_167, help="part 6: rows of the ImageNet-shaped features")
    ap.add_argument("--head-steps", type=int, default=2000, help="part 6: training steps of the logreg head")
    ap.add_argument("--home", default="/tmp/ogdash-scale", help="parts 5 and 6: where data and caches go")
    a = ap.parse_args()
    parts = {"3"} if a.quality_only else set(a.part.split(","))
    if "1" in parts:
        extraction()
    if "2" in parts:
        need_gb = 21 * a.n / 50_000  # the dense 100 x 512 baseline peaked at 19.6 GB for 50,000 samples
        available_gb = _status_mb_meminfo("MemAvailable:") / 1024
        skip = a.skip_dense_cifar100 or available_gb < need_gb
        if skip and not a.skip_dense_cifar100:
            print(f"\n(the dense 100 x 512 baseline needs ~{need_gb:.0f} GB; {available_gb:.0f} GB available: skipped)")
        scoring(a.n, skip)
    if "3" in parts:
        quality()
    if "4" in parts:
        tabular(a.n, a.steps, a.cache)
    if "5" in parts:
        million([int(v) for v in a.sizes.split(",")], a.home)
    if "6" in parts:
        imagenet(a.rows, a.head_steps, a.home)
