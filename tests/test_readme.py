"""Every command in the README and docs/ is run by a test, so the documentation cannot drift from the tool.

The default suite checks each ``python -m edgebench`` command as far as the CLI does before any work (the config
composes and validates, the chain parses, ``export=`` resolves; for a sweep, its first job), runs the fast form of the
commands whose comment makes a claim, and checks that every other command is owned by a named test. The slow suite
runs every ``python -m edgebench`` command through the CLI in its fast form (the Fashion-MNIST defaults swapped for
digits, one epoch, a sweep cut to a few jobs).
"""

from __future__ import annotations

import fnmatch
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hydra.core.override_parser.overrides_parser import OverridesParser

from edgebench import deploy, methods, pipeline
from edgebench.config import validate

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

# what makes a command fast: replaces the command's own value of the same key
FAST = {"data": "digits", "trainer.max_epochs": "1", "trainer.batch_size": "64", "measure.latency": "false",
        "trainer.progress_bar": "none"}
# further cuts for a command that contains the key (a substring of the command): fewer levels, rounds, jobs
CUTS = {
    "+method=lottery_ticket": {"method.levels": "2"},
    "method.rounds=5": {"method.rounds": "2"},
    "+sweep=leaderboard": {"device": "arduino_nano_33_ble_sense,host", "model": "lenet_300_100", "seed": "0",
                           "steps": "null,[ptq_int8]"},
    "+sweep=bit_ladder": {"method.bits": "8,2"},
    "+sweep=sparsity_ladder": {"method.sparsity": "0.5,0.96875"},
    "seed=0,1,2": {"seed": "0"},
    # still a list: a multirun composes its config once without the swept groups (+method=a,b), where a single
    # value of a key inside them would not resolve
    "method.sparsity=0.5,0.8,0.9": {"method.sparsity": "0.5,0.9"},
    "hydra.launcher.n_jobs=2": {"hydra.launcher.n_jobs": "1"},
    # 1,438 digits on a 100x100 canvas are memorised, not learned (val/acc 0.08 after 10 epochs): the keys at a
    # canvas the digits fill (test/acc 0.25 after 10 epochs)
    "data.canvas=100": {"data.canvas": "12", "data.clutter": "2", "trainer.max_epochs": "10"},
}
# commands a test elsewhere runs as written (the test named), or that need what a test cannot have
ELSEWHERE = {
    "make run": "the README's first command; .ci/run's `make test` builds the same set-up (Makefile target checked here)",
    "make test": ".ci/run runs it (checked here)",
    "python -m edgebench.store": "test_store_admin.py::test_the_readme_store_commands_run_as_written",
    "python -m edgebench.ui": "test_ui.py and test_ui_view.py start it and render its page",
    "python -m edgebench.report": "test_report.py and test_sweep.py (the leaderboard report)",
    "python -m edgebench.fit": "test_fit.py::test_the_readme_fit_commands_run_as_written",
    "python -m edgebench.study": "test_study.py (a smoke study through the CLI, resume, --report-only, bad budgets)",
    "hydra/launcher=submitit_slurm": "needs a Slurm cluster",
    "hydra/launcher=ray": "test_sweep.py's slow Ray test",
    "--ray": "test_ray_cluster.py::test_a_sweep_survives_the_loss_of_a_ray_worker_node (a two-node Ray cluster)",
    "--config-dir": "test_config.py (a device of your own; a rerun from its config.yaml in test_run_records.py)",
}


def _commands() -> list[tuple[str, str]]:
    """(file, command) for each line of a ```bash block and each inline `python -m edgebench ...` span."""
    found = []
    for doc in DOCS:
        text = doc.read_text()
        for block in re.findall(r"^```bash\n(.*?)^```", text, re.M | re.S):
            for line in block.splitlines():
                cmd = line.split(" #")[0].strip()
                if cmd and not cmd.startswith("#"):
                    found.append((doc.name, cmd))
        for span in re.findall(r"`(python -m edgebench[^`]*)`", text):
            if "..." not in span and "<" not in span and span != "python -m edgebench":
                found.append((doc.name, span))
    return found


COMMANDS = _commands()


def _owner(cmd: str) -> str | None:
    return next((why for key, why in ELSEWHERE.items() if key in cmd), None)


def _cli_args(cmd: str) -> list[str] | None:
    """The arguments after ``python -m edgebench`` of a main-CLI command, else None."""
    words = shlex.split(cmd)
    if words[:3] != ["python", "-m", "edgebench"]:
        return None
    return words[3:]


def _fast(cmd: str, args: list[str]) -> list[str]:
    """``args`` with FAST and the command's CUTS replacing its own values of the same keys."""
    set_ = dict(FAST)
    for key, cut in CUTS.items():
        if key in cmd:
            set_.update(cut)
    if "+preset=quick" in args or "experiment=quick" in args:  # the preset's own data and epochs are the point of it
        set_.pop("data"), set_.pop("trainer.max_epochs")
    own = next((a.split("=", 1)[1] for a in args if a.startswith("data=")), None)
    if own in ("translated", "cluttered"):  # the command's data set is the point: made from digits instead
        set_.pop("data")
        set_["data.base"] = "digits"
    out = [a for a in args if a.split("=", 1)[0].lstrip("+") not in set_]
    return out + [f"{k}={v}" for k, v in set_.items()]


def _first_job(args: list[str]) -> list[str]:
    """A multirun's first job: each swept override at its first value; a ``+sweep=`` preset's params too."""
    parser = OverridesParser.create()
    plain = [a for a in args if not a.startswith("-")]
    swept = {}
    for a in plain:
        m = re.fullmatch(r"\+sweep=(\w+)", a)
        if m:
            params = yaml.safe_load((ROOT / "conf" / "sweep" / f"{m.group(1)}.yaml").read_text())["hydra"]["sweeper"]
            swept.update({k: str(v) for k, v in params.get("params", {}).items()})
    job = []
    for a in plain:
        o = parser.parse_overrides([a])[0]
        key = o.get_key_element()
        if key.lstrip("+") in swept:
            swept.pop(key.lstrip("+"))  # the command line's own list replaces the preset's
        if "glob(" in a:
            pattern = re.search(r"glob\((.*)\)", a).group(1)
            group = key.lstrip("+")
            first = sorted(p.stem for p in (ROOT / "conf" / group).glob("*.yaml") if fnmatch.fnmatch(p.stem, pattern))
            assert first, f"{a}: no option of {group} matches"
            job.append(f"{key}={first[0]}")
        elif o.is_sweep_override():
            job.append(f"{key}={next(iter(o.sweep_string_iterator()))}")
        else:
            job.append(a)
    for key, values in swept.items():
        if "interval(" in values:
            lo = re.search(r"interval\(([^,]+),", values).group(1)
            job.append(f"{key}={lo.strip()}")
        else:
            first = parser.parse_overrides([f"{key}={values}"])[0]
            job.append(f"{key}={next(iter(first.sweep_string_iterator()))}")
    return job


def _checked_before_work(overrides: list[str], tmp_path: Path):
    """What `python -m edgebench` checks before any data, training or MLflow run; returns the exporter."""
    cfg = pipeline.compose(overrides, root_dir=tmp_path)
    spec = validate(cfg)
    steps = [methods.build(c) for c in methods.parse_steps(spec.method, spec.steps)]
    return deploy.exporter(spec, getattr(steps[-1], "spec_dtype", None) if steps else None)


def test_the_docs_have_commands_and_each_is_run_somewhere():
    cli = [c for _, c in COMMANDS if _cli_args(c) is not None and _owner(c) is None]
    assert len(cli) >= 20, cli  # the parser found the README's blocks and inline commands
    makefile = (ROOT / "Makefile").read_text()
    for _, cmd in COMMANDS:
        if cmd.startswith("make "):
            target = cmd.split()[1]
            assert re.search(rf"^{re.escape(target)}:", makefile, re.M), f"{cmd}: no such Makefile target"
        else:
            assert cmd.startswith("python -m edgebench"), f"{cmd}: a README command no test runs; add it to ELSEWHERE"
    assert "make test" in (ROOT / ".ci" / "run").read_text()  # CI runs the README's test command
    for why in ELSEWHERE.values():  # the owning tests exist
        for ref in re.findall(r"(test_\w+\.py)(?:::(\w+))?", why):
            path = ROOT / "tests" / ref[0]
            assert path.exists(), ref
            if ref[1]:
                assert f"def {ref[1]}(" in path.read_text(), ref


@pytest.mark.parametrize("where,cmd", [c for c in COMMANDS if _cli_args(c[1]) is not None and _owner(c[1]) is None
                                       and not {"--help", "--cfg"} & set(_cli_args(c[1]))],
                         ids=lambda v: v if "/" not in v and len(v) < 90 else None)
def test_each_readme_run_command_composes_validates_and_resolves_its_exporter(where, cmd, tmp_path):
    args = _cli_args(cmd)
    job = _first_job(args) if "-m" in args or "--multirun" in args else args
    exp = _checked_before_work(job, tmp_path)
    if "device=coral_dev_board" in cmd and "+method=ptq_int8" in cmd:  # the README's claim: the Coral's own format
        assert exp.name == "tflite_int8"


@pytest.mark.parametrize("flag", ["--help", "--cfg job"])
def test_the_readme_help_and_cfg_commands(flag, tmp_path):
    cmd = next(c for _, c in COMMANDS if c == f"python -m edgebench {flag}")
    out = subprocess.run([sys.executable, *shlex.split(cmd)[1:]], cwd=tmp_path, capture_output=True, text=True,
                         timeout=300, env={k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"})
    assert out.returncode == 0, out.stderr[-2000:]
    if flag == "--help":
        assert "device" in out.stdout and "coral_dev_board" in out.stdout
    else:
        assert yaml.safe_load(out.stdout)["model"]["name"] == "lenet_300_100"


def test_the_readme_coral_command_writes_an_int8_tflite_that_fits(make_cfg):
    """`python -m edgebench +method=ptq_int8 device=coral_dev_board  # int8 .tflite, the Coral's format: it fits`."""
    pytest.importorskip("ai_edge_litert")
    cmd = next(c for _, c in COMMANDS if "+method=ptq_int8 device=coral_dev_board" in c)
    res = pipeline.run(make_cfg(*_fast(cmd, _cli_args(cmd))))
    assert res.tags["export.name"] == "tflite_int8"
    assert res.metrics["device/fits"] == 1.0, res.tags.get("device.fit")


@pytest.mark.slow  # every run command through the CLI, about 30 of them
@pytest.mark.parametrize("where,cmd", [c for c in COMMANDS if _cli_args(c[1]) is not None and _owner(c[1]) is None
                                       and not {"--help", "--cfg"} & set(_cli_args(c[1]))],
                         ids=lambda v: v if "/" not in v and len(v) < 90 else None)
def test_each_readme_run_command_runs_in_its_fast_form(where, cmd, tmp_path):
    args = _fast(cmd, _cli_args(cmd))
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    out = subprocess.run([sys.executable, "-m", "edgebench", *args], cwd=tmp_path, capture_output=True, text=True,
                         timeout=1200, env=env)
    assert out.returncode == 0, f"{shlex.join(args)}\n{out.stderr[-3000:]}"
    assert (tmp_path / "results" / "mlflow.db").exists()
