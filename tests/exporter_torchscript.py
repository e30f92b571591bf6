"""A whole export format in one file: TorchScript (``torch.jit.trace``, ``model.ts``), run on the host by
``torch.jit.load``. Nothing else in edgebench names it: importing this module registers it, and ``export=torchscript``
then writes it, evaluates it, times it beside the dense model's own TorchScript file, checks fit on the device
runtimes that load it and names it in the summary (tests/test_new_format.py runs that end to end).

``USED`` counts what its predictor and its runner did, so a test can see that a run's accuracy and latency came
from them.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch

from edgebench.export import Artifact, register

USED = {"predicted": 0, "timed": 0}  # samples run by the predictor, calls made by the runner


def _open(path: Path) -> torch.jit.ScriptModule:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated in favour of torch.export
        return torch.jit.load(str(path)).eval()


def load(artifact: Artifact, threads: int = 0):
    """``logits = load(artifact)(x)``: the saved program on a batch (test accuracy)."""
    module = _open(artifact.path)

    def predict(x: torch.Tensor) -> torch.Tensor:
        USED["predicted"] += len(x)
        with torch.no_grad():
            return module(x)

    return predict


def runner(artifact: Artifact, example: torch.Tensor, threads: int):
    """One batch-1 call of the saved program (host latency)."""
    module = _open(artifact.path)
    x = example[:1].clone()

    def run():
        USED["timed"] += 1
        with torch.inference_mode():
            return module(x)

    return run


@register("torchscript", dtype="fp32", format="torchscript", runtime="torchscript", predictor=load, runner=runner,
          baseline="torchscript", devices=("pytorch",), label="TorchScript", packages=("torch",))
def torchscript(model: torch.nn.Module, example: torch.Tensor, spec, out_dir: Path) -> Artifact:
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "model.ts"
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.trace(model.eval(), example[:1]).save(str(path))
    return Artifact(path, [path], "torchscript", "torch.jit.trace", "fp32", "torchscript",
                    "a traced TorchScript program, run by torch.jit on the host")
