"""A store that cannot give a user the wrong model (issue 24: items 1, 2, 6 and part of 15).

End to end through the CLI where the issue says so (real subprocesses in ``tmp_path``, sklearn digits or two tiny
image folders written here), with the runs that only set up or read back a store entry made in-process (the same
``pipeline.run``, without a fresh interpreter's imports); the store's own behaviour through
:class:`edgebench.store.Store`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from mlflow.tracking import MlflowClient
from tests import cli

REPO = Path(__file__).resolve().parents[1]
FAST = ["trainer.batch_size=32", "measure.latency=false", "measure.export=false", "trainer.progress_bar=none"]


def _env() -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "HYDRA_FULL_ERROR")}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


def _cli(args, cwd: Path) -> subprocess.CompletedProcess:
    res = cli.run(args, cwd, env=_env(), timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    return res


def _runs(cwd: Path):
    """The top-level runs of the CLI runs made in ``cwd``, oldest first."""
    client = MlflowClient(f"sqlite:///{cwd / 'results' / 'mlflow.db'}")
    exp = client.get_experiment_by_name("edgebench")
    runs = client.search_runs([exp.experiment_id], order_by=["attributes.start_time ASC"], max_results=100)
    return [r for r in runs if "mlflow.parentRunId" not in r.data.tags]


def _image_folder(root: Path, bright: str, n: int = 40) -> Path:
    """Two classes ``a`` and ``b`` of 8x8 grey PNGs; the class named ``bright`` is light, the other dark."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for cls in ("a", "b"):
        (root / cls).mkdir(parents=True)
        base = 200 if cls == bright else 40
        for i in range(n):
            img = np.clip(base + rng.normal(0, 20, (8, 8)), 0, 255).astype(np.uint8)
            Image.fromarray(img, mode="L").save(root / cls / f"{i}.png")
    return root


# --- 1: the baseline key covers the data's content, not its path ---

def test_other_images_at_another_root_train_their_own_baseline(make_cfg, tmp_path):
    """In-process runs (what the key covers is the pipeline's; the CLI runs the same pipeline.run)."""
    from edgebench import pipeline

    a = _image_folder(tmp_path / "A", bright="a")
    b = _image_folder(tmp_path / "B", bright="b")  # the same classes, the labels the other way round
    common = ["data=image_folder", "data.image_size=8", "data.channels=1", "model=lenet_300_100",
              "trainer.max_epochs=3", *FAST]
    pipeline.run(make_cfg(*common, f"data.root={a}"))
    pipeline.run(make_cfg(*common, f"data.root={b}"))
    first, second = _runs(tmp_path)
    assert first.data.tags["baseline.cache_hit"] == "false"
    assert second.data.tags["baseline.cache_hit"] == "false", "B's run reused the model trained on A"
    assert second.data.tags["baseline.key"] != first.data.tags["baseline.key"]
    assert second.data.metrics["test/acc"] > 0.9  # its own model, not A's (which gets B's labels backwards)
    # the same images at another path are the same data: a hit
    c = tmp_path / "C"
    os.rename(a, c)
    pipeline.run(make_cfg(*common, f"data.root={c}"))
    third = _runs(tmp_path)[-1]
    assert third.data.tags["baseline.cache_hit"] == "true"
    assert third.data.tags["baseline.key"] == first.data.tags["baseline.key"]


def test_resume_never_returns_a_run_on_other_files_at_the_same_root(make_cfg, tmp_path):
    """resume=true matches the config hash, which covers the data's content: new files at the same data.root are a
    new job (before, the run on the old files was returned as this config's result)."""
    import shutil

    from edgebench import pipeline

    root = _image_folder(tmp_path / "A", bright="a")
    args = ["data=image_folder", f"data.root={root}", "data.image_size=8", "data.channels=1", "model=lenet_300_100",
            "trainer.max_epochs=3", "resume=true", *FAST]
    first = pipeline.run(make_cfg(*args))
    assert pipeline.run(make_cfg(*args)).skipped  # the same files: resumed
    shutil.rmtree(root)
    _image_folder(root, bright="b")  # other images, the same path
    again = pipeline.run(make_cfg(*args))
    assert not again.skipped and again.run_id != first.run_id
    assert again.tags["data.digest"] != first.tags["data.digest"]
    assert again.tags["config_hash"] != first.tags["config_hash"]


# --- 2: a stored file damaged inside (it still loads) is found, set aside and made again ---

def _zero_tensor_bytes(model_pt: Path) -> None:
    """Zero the bytes of every tensor record inside ``model_pt`` (a torch zip file): the zip's structure, and so
    ``torch.load``, stay intact; the weights become zeros."""
    import struct
    import zipfile

    with zipfile.ZipFile(model_pt) as z:
        records = [i for i in z.infolist() if "/data/" in i.filename]
    raw = bytearray(model_pt.read_bytes())
    for info in records:
        name_len, extra_len = struct.unpack("<HH", raw[info.header_offset + 26: info.header_offset + 30])
        start = info.header_offset + 30 + name_len + extra_len
        raw[start: start + info.compress_size] = bytes(info.compress_size)
    model_pt.write_bytes(bytes(raw))


def _damage(model_pt: Path) -> None:
    import torch

    before = torch.load(model_pt, weights_only=True)
    _zero_tensor_bytes(model_pt)
    after = torch.load(model_pt, weights_only=True)  # still loads: only the content is wrong
    assert after.keys() == before.keys() and all(float(t.abs().sum()) == 0 for t in after.values())


DIGITS = ["data=digits", "model=lenet_300_100", "trainer.max_epochs=2", *FAST]


def test_damaged_baseline_file_is_set_aside_and_retrained(make_cfg, tmp_path):
    from edgebench import pipeline

    pipeline.run(make_cfg(*DIGITS))  # the entry, made in-process; the run that finds it damaged is the CLI's
    (model_pt,) = (tmp_path / "results" / "cache" / "baselines").glob("*/model.pt")
    _damage(model_pt)
    res = _cli(DIGITS, tmp_path)
    first, second = _runs(tmp_path)
    assert second.data.tags["baseline.cache_hit"] == "false"
    assert second.data.metrics["test/acc"] > 0.8  # a trained model's accuracy, not the zeroed one's 0.1
    assert second.data.metrics["test/acc"] == pytest.approx(first.data.metrics["test/acc"], abs=0.05)
    assert list(model_pt.parent.parent.glob(model_pt.parent.name + ".corrupt-*")), "the damaged entry is kept aside"
    out = res.stdout + res.stderr
    assert "model.pt" in out and "sha256" in out  # the warning names the file and the reason


def test_baseline_below_its_stored_validation_accuracy_is_retrained(make_cfg):
    """The file hashes bypassed (meta.json rewritten to match the damaged file): the re-check on the validation
    split still refuses the model."""
    import hashlib

    from edgebench import cache, pipeline
    from edgebench.config import validate

    first = pipeline.run(make_cfg(*DIGITS))
    entry = cache.entry_dir(make_cfg(*DIGITS).paths.store_dir, validate(make_cfg(*DIGITS)))
    _damage(entry / "model.pt")
    meta = json.loads((entry / "meta.json").read_text())
    for rel in meta.get("files", {}):
        meta["files"][rel] = hashlib.sha256((entry / rel).read_bytes()).hexdigest()
    (entry / "meta.json").write_text(json.dumps(meta))
    again = pipeline.run(make_cfg(*DIGITS))
    assert not again.baseline_from_cache
    assert again.metrics["test/acc"] > 0.8 and again.metrics["baseline/test_acc"] == pytest.approx(
        first.metrics["baseline/test_acc"], abs=0.05)
    assert list(entry.parent.glob(entry.name + ".corrupt-*"))
    assert pipeline.run(make_cfg(*DIGITS)).baseline_from_cache  # the retrained entry passes its own re-check


def test_store_entry_with_a_changed_file_is_named_set_aside_and_remade(tmp_path, caplog):
    from edgebench.store import Store

    def save(value, folder: Path):
        (folder / "data.bin").write_bytes(value)

    def load(folder: Path):
        return (folder / "data.bin").read_bytes()

    s = Store(tmp_path)
    made = s.get_or_make("things", {"k": 1}, lambda: b"\x01" * 64, save, load)
    assert json.loads((made.path / "meta.json").read_text())["files"]["data.bin"]
    (made.path / "data.bin").write_bytes(b"\x01" * 32 + b"\x00" * 32)  # same size, still "loads"
    again = s.get_or_make("things", {"k": 1}, lambda: b"\x02" * 64, save, load)
    assert not again.hit and again.value == b"\x02" * 64
    assert list(tmp_path.glob("things/*.corrupt-*"))
    assert any("data.bin" in r.getMessage() and "sha256" in r.getMessage() for r in caplog.records)
    # a stored single file (a scope's part) is checked the same way
    scope = s.scope("scoped", {"k": 2})
    part = scope.part("level_1/mask.bin", lambda: b"\x03" * 16, lambda v, p: p.write_bytes(v),
                      lambda p: p.read_bytes(), file=True)
    (part.path).write_bytes(b"\x00" * 16)
    again = scope.part("level_1/mask.bin", lambda: b"\x04" * 16, lambda v, p: p.write_bytes(v),
                       lambda p: p.read_bytes(), file=True)
    assert not again.hit and again.value == b"\x04" * 16


# --- 6: a stored step output cannot run code when it is loaded ---

class _Payload:
    def __init__(self, target: str):
        self.target = target

    def __reduce__(self):
        return os.system, (f"touch {self.target}",)


def test_a_step_output_that_would_run_code_is_set_aside_and_remade(make_cfg, tmp_path):
    """Through the CLI: a stored step output replaced by a pickle whose loading would run a command (the entry is
    made, and the remade entry read back, in-process)."""
    import hashlib

    import torch

    from edgebench import pipeline

    args = [*DIGITS, "+method=magnitude_pruning", "method.sparsity=0.5", "method.retrain_epochs=1"]
    pipeline.run(make_cfg(*args))
    (entry,) = [p for p in (tmp_path / "results" / "cache" / "steps").glob("magnitude_pruning-*") if p.is_dir()]
    pwned = tmp_path / "pwned"
    torch.save({"model": _Payload(str(pwned))}, entry / "output.pt")
    # whoever can write the file can write its hash too: the hash check alone must not be what stops it
    meta = json.loads((entry / "meta.json").read_text())
    meta["files"]["output.pt"] = hashlib.sha256((entry / "output.pt").read_bytes()).hexdigest()
    (entry / "meta.json").write_text(json.dumps(meta))

    _cli(args, tmp_path)
    assert not pwned.exists(), "loading a stored step output ran the code in its pickle"
    assert list(entry.parent.glob(entry.name + ".corrupt-*")), "the entry is set aside"
    pipeline.run(make_cfg(*args))  # the remade entry loads: a hit
    first, again, third = _runs(tmp_path)
    assert [r.data.tags["step.0.cache_hit"] for r in (first, again, third)] == ["false", "false", "true"]
    assert again.data.metrics["test/acc"] == pytest.approx(first.data.metrics["test/acc"], abs=0.05)


@pytest.mark.parametrize("model", ["lenet_300_100", "lenet5", "conv2", "resnet20", "alexnet", "vgg11", "googlenet",
                                   "inception_v3", "resnet18", "densenet121", "mobilenet_v2", "mobilenet_v3_small",
                                   "conv2_small", "ram"])
def test_every_zoo_model_in_a_step_output_loads_weights_only(tmp_path, model):
    """What a step output holds (any zoo model, a QuantSpec, plots' data, children) loads through the allowlist."""
    import torch

    from edgebench import store
    from edgebench.config import ModelConfig, ModelName
    from edgebench.export import QuantSpec
    from edgebench.methods.base import ChildResult, CompressionResult, Plot
    from edgebench.models import build_model

    net = build_model(ModelConfig(name=ModelName(model)), (3, 32, 32), 10)
    out = CompressionResult(net, knobs={"k": 1.0}, series=[{"round": 0, "x": 1.0}], spec=QuantSpec(dtype="int8"),
                            tags={"t": "v"}, children=[ChildResult("level 1", net, {"m": 0.5})],
                            plots={"p.png": Plot("levels", {"xs": [1, 2], "ys": [0.5, 0.6]})})
    torch.save(out, tmp_path / "output.pt")
    back = store.load_objects(tmp_path / "output.pt")
    assert type(back.model) is type(net) and back.spec == out.spec and back.plots == out.plots
    assert back.knobs == out.knobs and back.children[0].metrics == {"m": 0.5}
    sd, bsd = net.state_dict(), back.model.state_dict()
    assert sd.keys() == bsd.keys() and all(torch.equal(sd[k], bsd[k]) for k in sd)


# --- 15 (part): a step is keyed on what changes its output, one spelling per step ---

def _step_tags(cfg, run_id: str) -> tuple[str, str]:
    tags = MlflowClient(cfg.paths.mlflow_tracking_uri).get_run(run_id).data.tags
    return tags["step.0.key"], tags["step.0.cache_hit"]


def test_method_and_a_chain_of_one_share_the_step(make_cfg):
    from edgebench import pipeline

    cfg = make_cfg(*DIGITS, "+method=distillation", "method.epochs=1")
    first = _step_tags(cfg, pipeline.run(cfg).run_id)
    chain = make_cfg(*DIGITS, "steps=[{name:distillation,epochs:1}]")
    second = _step_tags(chain, pipeline.run(chain).run_id)
    assert first[1] == "false"
    assert second == (first[0], "true"), "the same distillation, spelled as a chain of one, was made again"


def test_only_fields_the_step_uses_change_its_key(make_cfg):
    from edgebench import pipeline

    prune = [*DIGITS, "+method=magnitude_pruning", "method.sparsity=0.5", "method.retrain_epochs=1"]
    first = _step_tags(make_cfg(*prune), pipeline.run(make_cfg(*prune)).run_id)
    # agp_update_every applies to schedule=agp only: this (iterative) pruning is the same work
    unused = _step_tags(make_cfg(*prune), pipeline.run(make_cfg(*prune, "method.agp_update_every=7")).run_id)
    assert unused == (first[0], "true")
    used = _step_tags(make_cfg(*prune), pipeline.run(make_cfg(*prune, "method.sparsity=0.6")).run_id)
    assert used[0] != first[0] and used[1] == "false"


def test_step_keys_of_unused_and_used_fields():
    """Without running: each method leaves out exactly the fields its configuration does not use."""
    from omegaconf import OmegaConf

    from edgebench import methods

    def key(name: str, **over):
        return methods.build(methods.parse(OmegaConf.merge(OmegaConf.load(REPO / "conf" / "method" / f"{name}.yaml"),
                                                           over))).key()

    for name in methods.REGISTRY:  # +method=NAME (its YAML) and steps=[NAME] (the schema's defaults): one key
        assert key(name) == methods.build(methods.parse({"name": name})).key(), name
    assert key("distillation", sp_weight=1.0) == key("distillation")  # kind=response: no relation terms
    assert key("distillation", teacher={"seed": 3}) == key("distillation")  # the run's own model teaches
    zoo = {"model": "resnet20"}
    assert key("distillation", teacher={**zoo, "seed": 3}) != key("distillation", teacher=zoo)
    assert key("distillation", kind="relation", relation="sp", rkd_angle_weight=1.0) == key(
        "distillation", kind="relation", relation="sp")
    assert key("distillation", kind="relation", relation="sp", sp_weight=1.0) != key(
        "distillation", kind="relation", relation="sp")
    assert key("distillation", temperature=2.0) != key("distillation")
    assert key("ptq_int8", lr=0.5, finetune_epochs=3) == key("ptq_int8")  # post-training: no fine-tuning
    assert key("qat_int8", lr=0.5) != key("qat_int8")
    assert key("uniform_quant", lr=0.5) == key("uniform_quant")  # finetune_epochs=0
    assert key("uniform_quant", lr=0.5, finetune_epochs=1) != key("uniform_quant", finetune_epochs=1)
    assert key("low_rank", ratio=0.5, energy=0.8) == key("low_rank", ratio=0.5)
    assert key("low_rank", energy=0.8) != key("low_rank")
    assert key("magnitude_pruning", schedule="agp", agp_update_every=7) != key("magnitude_pruning", schedule="agp")
