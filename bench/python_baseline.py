#!/usr/bin/env python3
"""What a user would otherwise run: the benchmark's TorchScript nets sampled from Python.

Reads the nets that `flowscope-bench --model-dir DIR` writes (DIR/small/model.pt and
DIR/large/model.pt: velocity prediction on the linear path, t from 0 at the noise to 1 at the
data) and times, warm, median of repeats, with device synchronization:
  - the forward pass alone,
  - an eager Euler loop  x <- x + h v(x, t),
  - torchdiffeq's odeint with method="euler" on the same grid (when torchdiffeq is installed).
Prints a table, or JSON with --json, in milliseconds per step like flowscope-bench.

  python3 bench/python_baseline.py --model-dir DIR [--device auto|cpu|cuda] [--steps N]
                                   [--batch 16] [--repeats N] [--json]
"""
import argparse
import json
import os
import statistics
import sys
import time

import torch


def median_ms(body, repeats, device, warmup=2):
    for _ in range(warmup):
        body()
    samples = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        body()
        if device.type == "cuda":
            torch.cuda.synchronize()
        samples.append((time.perf_counter() - start) * 1e3)
    return statistics.median(samples)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", required=True, help="the folder flowscope-bench --model-dir wrote")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--steps", type=int, default=0, help="Euler steps (default: 32 on CUDA, 8 on the CPU)")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("python_baseline: --device cuda, but this torch sees no CUDA GPU")
    use_cuda = args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available())
    device = torch.device("cuda" if use_cuda else "cpu")
    steps = args.steps or (32 if use_cuda else 8)
    try:
        import torchdiffeq
    except ImportError:
        torchdiffeq = None

    # All cores, as the engine uses (some builds of torch start with one thread).
    torch.set_num_threads(os.cpu_count() or 1)
    torch.manual_seed(0)
    figures = []
    with torch.inference_mode():
        for net in ("small", "large"):
            module = torch.jit.load(f"{args.model_dir}/{net}/model.pt", map_location=device).eval()
            with open(f"{args.model_dir}/{net}/flowscope.json") as manifest:
                shape = json.load(manifest)["sample_shape"]
            repeats = args.repeats if (net == "small" or use_cuda) else 3
            x0 = torch.randn(args.batch, *shape, device=device)
            t_half = torch.full((args.batch,), 0.5, device=device)
            grid = torch.linspace(0.0, 1.0, steps + 1, device=device)

            def forward_only():
                for _ in range(steps):
                    module(x0, t_half)

            def euler_loop():
                x = x0
                for i in range(steps):
                    t = grid[i].expand(args.batch)
                    x = x + (grid[i + 1] - grid[i]) * module(x, t)
                return x

            figures.append({"net": net, "name": "forward alone", "ms": median_ms(forward_only, repeats, device) / steps})
            figures.append({"net": net, "name": "eager Euler loop", "ms": median_ms(euler_loop, repeats, device) / steps})
            if torchdiffeq is not None:
                def velocity(t, x):
                    return module(x, t.expand(args.batch))

                def odeint_euler():
                    return torchdiffeq.odeint(velocity, x0, grid, method="euler")[-1]

                figures.append({"net": net, "name": "torchdiffeq euler",
                                "ms": median_ms(odeint_euler, repeats, device) / steps})
                # The same samples from both Python loops, as a check that they solve the same ODE.
                difference = (euler_loop() - odeint_euler()).abs().max().item()
                figures.append({"net": net, "name": "max |eager - torchdiffeq|", "ms": difference})

    result = {"device": torch.cuda.get_device_name(device) if use_cuda else f"CPU, {torch.get_num_threads()} threads",
              "torch": torch.__version__, "steps": steps, "batch": args.batch,
              "torchdiffeq": getattr(torchdiffeq, "__version__", "installed") if torchdiffeq else None,
              "figures": figures}
    if args.json:
        print(json.dumps(result))
        return
    print(f"Python baseline ({result['device']}, torch {torch.__version__}), ms per step, {steps} Euler steps, "
          f"batch {args.batch}, median of {args.repeats} runs")
    if torchdiffeq is None:
        print("  torchdiffeq is not installed: only the eager loop is measured")
    for figure in figures:
        print(f"  {figure['net']:>5} net  {figure['name']:<28} {figure['ms']:10.4f}")


if __name__ == "__main__":
    main()
