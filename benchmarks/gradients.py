"""Throughput of the closed-form last-layer gradient engine, measured in one run.

Prints ratios, not absolute targets: closed-form vs a plain forward pass over the
same data (target >= 0.9), and vs a per-sample autograd loop (target >= 20x).
Usage: python benchmarks/gradients.py [--n 10000] [--side 28]
"""
import argparse
import time

import numpy as np
import torch

from ogdash.data import make_dataset
from ogdash.engine.gradients import last_layer_gradients
from ogdash.models import ModelSpec, build_model, per_sample_loss
from ogdash.models.devices import prepare, to_input


def best_of(fn, repeats=3):
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--side", type=int, default=28)
    ap.add_argument("--loop-n", type=int, default=300, help="samples timed in the autograd loop")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    X = rng.random((args.n, 1, args.side, args.side), dtype=np.float32)
    y = rng.integers(0, 10, args.n)
    ds = make_dataset("bench", X, y, tuple(map(str, range(10))))
    # every variant runs the same model in the same (channels-last) layout
    model = prepare(build_model(ModelSpec("cnn"), X.shape[1:], 10, seed=0), "cpu", True)
    chunk = 512

    def forward():
        with torch.no_grad():
            for s in range(0, args.n, chunk):
                model(to_input(X[s:s + chunk], "cpu"))

    def closed():
        last_layer_gradients(model, ds, chunk_size=chunk, device="cpu")

    def loop_head_only():  # the best a loop can do: autograd into the head's parameters only
        params = [model.head.weight, model.head.bias]
        for i in range(args.loop_n):
            loss = per_sample_loss(model(to_input(X[i:i + 1], "cpu")), torch.as_tensor(y[i:i + 1]))[0]
            torch.autograd.grad(loss, params)

    def loop_backward():  # what a plain script does: loss.backward(), then read the head's .grad
        for i in range(args.loop_n):
            model.zero_grad()
            per_sample_loss(model(to_input(X[i:i + 1], "cpu")), torch.as_tensor(y[i:i + 1]))[0].backward()
            torch.cat([model.head.weight.grad.flatten(), model.head.bias.grad])

    forward()  # warm up
    t_fwd, t_closed = best_of(forward), best_of(closed)
    t_head = best_of(loop_head_only, 1) * args.n / args.loop_n
    t_back = best_of(loop_backward, 1) * args.n / args.loop_n
    print(f"small CNN, {args.n} inputs of 1x{args.side}x{args.side}, {torch.get_num_threads()} threads")
    print(f"forward pass only        {t_fwd:8.3f} s")
    print(f"closed-form gradients    {t_closed:8.3f} s   throughput vs forward: {t_fwd / t_closed:.2f}x (target >= 0.9)")
    print(f"autograd loop, .backward() {t_back:6.3f} s   speed-up of closed form: {t_back / t_closed:.1f}x (target >= 20x)")
    print(f"autograd loop, head only   {t_head:6.3f} s   speed-up of closed form: {t_head / t_closed:.1f}x")
    print(f"(loops extrapolated from {args.loop_n} samples)")


if __name__ == "__main__":
    main()
