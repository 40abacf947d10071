#!/usr/bin/env python3
"""Export a PyTorch network as a FlowScope bundle: a folder with a TorchScript file and flowscope.json.

FlowScope calls the network as ``forward(x, time)`` with x shaped [B, *sample_shape] and time
shaped [B], and expects a tensor shaped like x back. The manifest declares what the network
predicts and on which path it was trained, so FlowScope can sample it along any path and solver.

Use it from your own code:

    from export_bundle import export_bundle
    export_bundle(my_model.eval(), "my-flow", name="my rectified flow", prediction="velocity",
                  path="linear", time_input="t", sample_shape=[1, 28, 28])

or run this file to export a small (untrained) example network and see the format:

    python3 export_bundle.py example-bundle
    flowscope-cli sample --model bundle:example-bundle --trust-model --out grid.png
"""

import argparse
import hashlib
import json
import math
import os
import tempfile

import torch

PREDICTIONS = ("velocity", "epsilon", "data", "v")
PATHS = ("linear", "vp", "cosine", "ve")
TIME_INPUTS = ("t", "sigma", "timestep1000")


def _sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _script(module):
    """torch.jit.script keeps control flow; fall back to tracing for modules scripting rejects."""
    if isinstance(module, torch.jit.ScriptModule):
        return module
    try:
        return torch.jit.script(module)
    except Exception as error:  # scripting is strict about Python features; tracing is not
        raise SystemExit(
            f"torch.jit.script failed ({error}).\nTrace instead: "
            "torch.jit.trace(model, (x, time)) with example inputs, and pass the traced module."
        )


def export_bundle(module, directory, *, name, prediction, path, time_input, sample_shape,
                  value_range=(-1.0, 1.0), file="model.pt", conditioning=None, extra=None):
    """Writes DIRECTORY/FILE (TorchScript) and DIRECTORY/flowscope.json; returns the manifest.

    conditioning: the named tensors (one sample's worth) FlowScope will pass after `time` as
    keyword arguments, for the self-check; save them yourself as the bundle's .safetensors file.
    """
    if prediction not in PREDICTIONS:
        raise ValueError(f"prediction must be one of {PREDICTIONS}")
    if path not in PATHS:
        raise ValueError(f"path must be one of {PATHS}")
    if time_input not in TIME_INPUTS:
        raise ValueError(f"time_input must be one of {TIME_INPUTS}")
    os.makedirs(directory, exist_ok=True)
    scripted = _script(module)

    # Check the calling convention once before writing anything.
    x = torch.randn(2, *sample_shape)
    kwargs = {k: v.unsqueeze(0).expand(2, *v.shape) for k, v in (conditioning or {}).items()}
    with torch.no_grad():
        out = scripted(x, torch.full((2,), 0.25), **kwargs)
    if out.shape != x.shape:
        raise ValueError(f"forward returned shape {tuple(out.shape)} for input {tuple(x.shape)}")

    model_path = os.path.join(directory, file)
    scripted.save(model_path)
    manifest = {
        "name": name,
        "format": "torchscript",
        "file": file,
        "prediction": prediction,
        "path": path,
        "time_input": time_input,
        "sample_shape": list(sample_shape),
        "value_range": list(value_range),
        "sha256": _sha256(model_path),
    }
    manifest.update(extra or {})
    # Written through a temporary file, so a bundle never has half a manifest.
    fd, temporary = tempfile.mkstemp(dir=directory, suffix=".json")
    with os.fdopen(fd, "w") as f:
        json.dump(manifest, f, indent=2)
        f.write("\n")
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(temporary, 0o666 & ~umask)
    os.replace(temporary, os.path.join(directory, "flowscope.json"))
    return manifest


class TinyVelocityNet(torch.nn.Module):
    """A small convolutional velocity network with a sinusoidal time embedding (untrained)."""

    def __init__(self, channels=1, width=32):
        super().__init__()
        self.width = width
        self.inp = torch.nn.Conv2d(channels, width, 3, padding=1)
        self.time = torch.nn.Linear(width, width)
        self.mid = torch.nn.Conv2d(width, width, 3, padding=1)
        self.out = torch.nn.Conv2d(width, channels, 3, padding=1)

    def forward(self, x, time):
        half = self.width // 2
        freqs = torch.exp(-math.log(1000.0) * torch.arange(half, device=x.device, dtype=x.dtype) / half)
        angles = time.to(x.dtype)[:, None] * 1000.0 * freqs[None, :]
        embedding = torch.cat([angles.sin(), angles.cos()], dim=1)
        h = torch.nn.functional.silu(self.inp(x) + self.time(embedding)[:, :, None, None])
        h = torch.nn.functional.silu(self.mid(h))
        return self.out(h)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("directory", help="the bundle folder to write")
    args = parser.parse_args()
    torch.manual_seed(0)
    manifest = export_bundle(TinyVelocityNet().eval(), args.directory, name="example velocity network",
                             prediction="velocity", path="linear", time_input="t", sample_shape=[1, 28, 28])
    print(f"wrote {args.directory}/flowscope.json and {args.directory}/{manifest['file']} "
          f"(sha256 {manifest['sha256']})")


if __name__ == "__main__":
    main()
