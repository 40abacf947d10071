#!/usr/bin/env python3
"""bench/gpu_table.py against a small pair of result files: the engine-against-Python rows take
the overhead section's per-step figures, not the other figures that name the engine or a net.

  python3 tests/bench/test_gpu_table.py bench/gpu_table.py
"""
import json
import os
import re
import subprocess
import sys
import tempfile
import unittest

SCRIPT = sys.argv.pop(1) if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "../../bench/gpu_table.py")


def figure(name, ms, note=""):
    return {"name": name, "ms": ms, "note": note}


BENCH = {
    "device": "test device",
    "libtorch": "0.0",
    "steps": 8,
    "figures": [
        figure("small net (64 ch, 6 residual convs, 1x28x28, batch 16): forward alone", 0.5),
        figure("small net (64 ch, 6 residual convs, 1x28x28, batch 16): engine loop, per step", 0.5),
        figure("small net (64 ch, 6 residual convs, 1x28x28, batch 16): engine as a CUDA graph, per step", 0.25),
        figure("large net (128 ch, 8 residual convs, 1x28x28, batch 16): engine loop, per step", 2.0),
        # Later sections name the nets and the engine too; they are not per-step figures.
        figure("small net: 6 x 4 sweep (2 paths x 3 solvers x 1,2,4,8 steps), batch 4, lanes in one batch", 700.0),
        figure("small net: dopri5 on 3 paths with their references, fresh engine, lanes", 4000.0),
        figure("small net, 8 steps, a frame every step", 230.0),
    ],
    "ratios": [{"name": "small net: engine step / forward", "value": 1.0, "target": "<= 1.03 (GPU)"}],
    "notes": [],
}
PYTHON = {
    "device": "test device",
    "torch": "0.0",
    "torchdiffeq": "0.0",
    "figures": [
        {"net": "small", "name": "eager Euler loop", "ms": 1.0},
        {"net": "small", "name": "torchdiffeq euler", "ms": 1.5},
        {"net": "large", "name": "eager Euler loop", "ms": 3.0},
    ],
}


class GpuTable(unittest.TestCase):
    def test_engine_against_python(self):
        with tempfile.TemporaryDirectory() as directory:
            paths = []
            for name, content in (("bench.json", BENCH), ("python.json", PYTHON)):
                path = os.path.join(directory, name)
                with open(path, "w") as handle:
                    json.dump(content, handle)
                paths.append(path)
            output = subprocess.run([sys.executable, SCRIPT, *paths], check=True, capture_output=True, text=True).stdout
        found = {}
        for line in output.splitlines():
            match = re.match(r"\s*(\w+) net: (.+?) / engine (\w+)\s+([\d.]+)x", line)
            if match:
                found[match.group(1, 2, 3)] = float(match.group(4))
        self.assertEqual(found[("small", "eager Euler loop", "loop")], 2.0, output)
        self.assertEqual(found[("small", "eager Euler loop", "graph")], 4.0, output)
        self.assertEqual(found[("small", "torchdiffeq euler", "loop")], 3.0, output)
        self.assertEqual(found[("large", "eager Euler loop", "loop")], 1.5, output)
        self.assertNotIn(("large", "eager Euler loop", "graph"), found)


if __name__ == "__main__":
    unittest.main()
