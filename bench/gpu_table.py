#!/usr/bin/env python3
"""The short table bench/gpu.sh prints last: flowscope-bench's figures and ratios beside the
Python baseline's, with the engine against the eager loop and torchdiffeq per net.

  python3 bench/gpu_table.py BENCH_JSON PYTHON_JSON [MORE_BENCH_JSON...]

MORE_BENCH_JSON: other flowscope-bench runs (the FLUX.1 section), printed after the rest.
"""
import json
import sys


def load(path):
    try:
        with open(path) as handle:
            return json.load(handle)
    except (OSError, ValueError) as error:
        print(f"  ({path}: {error})")
        return None


def print_bench(bench):
    print(f"flowscope-bench on {bench['device']} (LibTorch {bench['libtorch']}), {bench['steps']} Euler steps")
    for figure in bench["figures"]:
        print(f"  {figure['name']:<70} {figure['ms']:10.4f} ms  {figure['note']}")
    print("ratios")
    for ratio in bench["ratios"]:
        target = f"(target {ratio['target']})" if ratio["target"] else ""
        print(f"  {ratio['name']:<70} {ratio['value']:10.4g}  {target}")
    for note in bench["notes"]:
        print(f"  note: {note}")


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    bench, python = load(sys.argv[1]), load(sys.argv[2])
    if bench:
        print_bench(bench)
    if python:
        print(f"\nPython on {python['device']} (torch {python['torch']}, torchdiffeq {python['torchdiffeq']}), ms per step")
        for figure in python["figures"]:
            print(f"  {figure['net']:>5} net  {figure['name']:<28} {figure['ms']:10.4f}")
    if bench and python:
        print("\nengine against Python, per step (higher is faster for the engine)")
        engine = {}
        for figure in bench["figures"]:
            for net in ("small", "large"):
                # The overhead section's per-step figures only (other sections name the engine too).
                if not figure["name"].startswith(net + " net"):
                    continue
                if figure["name"].endswith(": engine loop, per step"):
                    engine[(net, "loop")] = figure["ms"]
                elif figure["name"].endswith(": engine as a CUDA graph, per step"):
                    engine[(net, "graph")] = figure["ms"]
        for figure in python["figures"]:
            if figure["name"] not in ("eager Euler loop", "torchdiffeq euler"):
                continue
            for kind in ("loop", "graph"):
                ours = engine.get((figure["net"], kind))
                if ours:
                    target = "  (target >= 2)" if figure["name"] == "torchdiffeq euler" else ""
                    print(f"  {figure['net']:>5} net: {figure['name']} / engine {kind:<5} {figure['ms'] / ours:8.2f}x{target}")


    for path in sys.argv[3:]:
        more = load(path)
        if more:
            print()
            print_bench(more)


if __name__ == "__main__":
    main()
