"""A deployable in MLflow's model format, so it can be an MLflow 3 LoggedModel whatever its format.

An ONNX file is saved with MLflow's ``onnx`` flavour (``mlflow.onnx.load_model`` and ``mlflow.pyfunc`` load it);
any other file (a ``.tflite``, TFLite Micro's ``.tflite`` with its C array, a bf16 ``torch.export`` program) as a
``python_function`` model, :class:`DeployedModel`, that runs the file in its host runtime exactly as the run did
for its test accuracy (its exporter's predictor: LiteRT for a ``.tflite``, PyTorch for a program).
``mlflow.pyfunc.load_model(uri).predict(x)`` takes a float32 batch and returns the logits of the file. Loading a
pyfunc model needs edgebench installed (the model class lives here).

Requirements are pinned from the installed packages (``pip_requirements``), not inferred: MLflow's inference
loads the model in a subprocess and takes seconds per run.
"""

from __future__ import annotations

from importlib.metadata import version
from pathlib import Path

import mlflow.pyfunc
import numpy as np
import torch

from edgebench.export.artifact import Artifact
from edgebench.export.registry import of

def requirements(artifact: Artifact) -> list[str]:
    """What the artifact's host runtime needs (its exporter's ``packages``), as pip names pinned to what is installed."""
    return [f"{name}=={version(name)}" for name in of(artifact).packages]


class DeployedModel(mlflow.pyfunc.PythonModel):
    """An exported file as a pyfunc model, ``predict(float32 batch) -> logits``, run by
    :func:`edgebench.export.predictor` as the run ran it."""

    def __init__(self, artifact: Artifact):
        self.format, self.dtype, self.runtime = artifact.format, artifact.dtype, artifact.runtime
        self.name = artifact.name  # the exporter whose predictor runs it

    def load_context(self, context) -> None:
        from edgebench.export.host import predictor

        path = Path(context.artifacts["model"])  # a model saved before ``name`` was kept: found by format and dtype
        self._run = predictor(Artifact(path, [path], self.format, "", self.dtype, self.runtime,
                                       name=getattr(self, "name", "")))

    def predict(self, context, model_input: np.ndarray, params=None) -> np.ndarray:
        x = torch.from_numpy(np.ascontiguousarray(model_input, dtype=np.float32))
        return self._run(x).float().numpy()


def save_model(artifact: Artifact, example: torch.Tensor, path: Path, mlflow_model) -> None:
    """Write ``artifact`` in MLflow's model format at ``path`` (a folder that must not exist), with a signature and
    ``example`` (one input) as its input example; ``mlflow_model``: the :class:`mlflow.models.Model` it fills in
    (its ``model_id`` links the folder to its LoggedModel)."""
    from mlflow.models import infer_signature

    x = example.detach().cpu().numpy().astype(np.float32)
    if artifact.format == "onnx":
        import onnx
        from mlflow import onnx as mlflow_onnx

        from edgebench.export.host import OnnxPredictor

        session = OnnxPredictor(artifact.path).session
        inp = session.get_inputs()[0]
        x = x.astype(np.float16 if inp.type == "tensor(float16)" else np.float32)
        y = session.run(None, {inp.name: x})[0]
        model = onnx.load(str(artifact.path))
        large = sum(t.ByteSize() for t in model.graph.initializer) > 1_800_000_000
        mlflow_onnx.save_model(model, str(path), mlflow_model=mlflow_model, signature=infer_signature(x, y),
                               input_example=x, pip_requirements=requirements(artifact),
                               save_as_external_data=large)
        return
    from edgebench.export.host import predictor

    y = predictor(artifact)(torch.from_numpy(x)).float().numpy()
    files = {"model": str(artifact.path), **{f.name: str(f) for f in artifact.extra_files}}  # + a C array's files
    mlflow.pyfunc.save_model(str(path), python_model=DeployedModel(artifact), artifacts=files,
                             mlflow_model=mlflow_model, signature=infer_signature(x, y), input_example=x,
                             pip_requirements=requirements(artifact))
