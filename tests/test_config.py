"""Every option of every config group composes; bad input fails at once, naming the key."""

from __future__ import annotations

import subprocess
import sys

import pytest
from hydra.errors import ConfigCompositionException

from edgebench.config import ConfigError, EdgebenchConfig, validate
from tests.conftest import CONF, group_options
from tests import cli

GROUPS = ["model", "data", "device", "trainer", "paths", "preset", "chain", "experiment", "pipeline"]  # the last two: old names
CASES = [(g, o) for g in GROUPS for o in group_options(g)]


def test_every_group_has_options():
    for g in GROUPS + ["hydra"]:
        assert group_options(g), f"conf/{g}/ has no options"


@pytest.mark.parametrize("group,option", CASES, ids=[f"{g}={o}" for g, o in CASES])
def test_every_option_composes_and_validates(make_cfg, group, option):
    overrides = [f"+{group}={option}" if group in ("preset", "chain", "pipeline") else f"{group}={option}"]
    if option == "image_folder":
        overrides.append("data.root=/some/folder")
    cfg = make_cfg(*overrides)
    spec = validate(cfg)
    assert isinstance(spec, EdgebenchConfig)
    if group in ("model", "data"):
        assert getattr(spec, group).name.value == option
    if group == "device":
        assert spec.device.name == option


def test_default_is_the_dense_baseline(make_cfg):
    spec = validate(make_cfg())
    assert spec.method is None
    assert spec.model.name.value == "lenet_300_100" and spec.data.name.value == "fashion_mnist"
    assert spec.device.name == "host"


def test_unknown_option_lists_the_allowed_ones(make_cfg):
    with pytest.raises(ConfigCompositionException) as e:
        make_cfg("model=resnet999")
    msg = str(e.value)
    assert "model/resnet999" in msg and "lenet_300_100" in msg and "resnet18" in msg


def test_negative_epochs_rejected_naming_the_key(make_cfg):
    with pytest.raises(ConfigError, match=r"trainer\.max_epochs: must be >= 1, got -3"):
        validate(make_cfg("trainer.max_epochs=-3"))


def test_wrong_type_rejected_naming_the_key(make_cfg):
    with pytest.raises(ConfigCompositionException) as e:
        make_cfg("trainer.max_epochs=ten")
    assert "trainer.max_epochs" in str(e.value.__cause__) or "trainer.max_epochs" in str(e.value)


def test_bad_enum_value_lists_the_allowed_values(make_cfg):
    with pytest.raises(ConfigCompositionException) as e:
        make_cfg("trainer.optimizer=rmsprop")
    msg = str(e.value.__cause__)
    assert "trainer.optimizer" in msg and "adam" in msg and "sgd" in msg


def test_unknown_key_rejected(make_cfg):
    with pytest.raises(ConfigCompositionException) as e:
        make_cfg("trainer.max_epoch=3")
    assert "max_epoch" in str(e.value)


def test_fraction_out_of_range(make_cfg):
    with pytest.raises(ConfigError, match=r"data\.val_fraction"):
        validate(make_cfg("data.val_fraction=1.5"))


def test_image_folder_needs_a_root(make_cfg):
    with pytest.raises(ConfigError, match=r"data\.root"):
        validate(make_cfg("data=image_folder", "data.root=null"))


def _cli(*args, cwd):
    return cli.run(args, cwd, timeout=300)  # python -m edgebench, forked preloaded


def test_help_lists_groups_and_options(tmp_path):
    out = _cli("--help", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    for line in ("model:", "data:", "device:", "trainer:", "experiment:", "lenet_300_100", "fashion_mnist",
                 "+method=OPTION", "max_epochs"):
        assert line in out.stdout


def test_cli_rejects_bad_value_before_any_work(tmp_path):
    out = _cli("trainer.max_epochs=-1", cwd=tmp_path)
    assert out.returncode != 0
    assert "trainer.max_epochs: must be >= 1, got -1" in out.stderr
    assert not (tmp_path / "results" / "mlflow.db").exists(), "no store or run may be created for a bad config"


def test_a_user_device_profile_from_another_config_dir(tmp_path):
    """The README's recipe: one YAML in a folder of your own, then --config-dir and device=NAME."""
    (tmp_path / "my_conf" / "device").mkdir(parents=True)
    (tmp_path / "my_conf" / "device" / "my_board.yaml").write_text(
        "name: my_board\nkind: mcu\npeak_ops: {int8: 1.0e9, fp32: 5.0e8}\nmemory_bytes: 131072\n"
        "storage_bytes: 2097152\ndtypes: [fp32, int8]\nweights_in_ram: false\nsources: {memory_bytes: my datasheet}\n")
    out = _cli("--config-dir", str(tmp_path / "my_conf"), "device=my_board", "--cfg", "job", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "name: my_board" in out.stdout and "memory_bytes: 131072" in out.stdout
    bad = _cli("--config-dir", str(tmp_path / "my_conf"), "device=my_board", "device.memory_bytes=lots",
               "--cfg", "job", cwd=tmp_path)
    assert bad.returncode != 0 and "device.memory_bytes" in bad.stderr


def test_the_old_store_key_still_works_and_says_so(make_cfg, tmp_path, capsys):
    from edgebench import config

    config._noted.clear()
    spec = validate(make_cfg(f"paths.cache_dir={tmp_path / 'old'}"))
    assert spec.paths.store_dir == str(tmp_path / "old") and spec.paths.cache_dir is None
    assert capsys.readouterr().err.strip() == f"edgebench: paths.cache_dir= is deprecated: use paths.store_dir={tmp_path / 'old'}"
    assert validate(make_cfg()).paths.store_dir.endswith("results/cache")  # the store's folder keeps its name


@pytest.mark.parametrize("option", group_options("method"))
def test_every_method_option_composes_and_parses(make_cfg, option):
    from edgebench import methods

    import yaml

    cfg = make_cfg(f"+method={option}")
    parsed = methods.parse(validate(cfg).method)
    # a variant (distillation_resnet20) extends its method's config through defaults: it is that method
    defaults = yaml.safe_load((CONF / "method" / f"{option}.yaml").read_text()).get("defaults") or []
    base = next((d for d in defaults if isinstance(d, str) and d != "_self_"), option)
    assert parsed.name == base
    assert methods.build(parsed).name == base


def test_method_is_added_not_overridden(make_cfg):
    with pytest.raises(ConfigCompositionException, match="Could not override 'method'"):
        make_cfg("method=magnitude_pruning")


def test_unknown_method_key_names_it(make_cfg):
    from edgebench import methods

    with pytest.raises(ConfigError, match="sparsityy"):
        methods.parse(validate(make_cfg("+method=magnitude_pruning", "+method.sparsityy=0.5")).method)


def test_a_typo_in_a_command_line_key_is_one_line_with_the_nearest_key():
    from edgebench.config import check_override_keys

    with pytest.raises(ConfigError, match=r"^trainer.max_epoch: unknown key \(did you mean trainer.max_epochs\?\); "
                                          "known keys of trainer: max_epochs, "):
        check_override_keys(["model=lenet5", "trainer.max_epoch=3"])
    with pytest.raises(ConfigError, match=r"model.glimpse: unknown key \(did you mean model.glimpses\?\)"):
        check_override_keys(["model=ram", "model.glimpse=4"])
    # right keys, sweeps, additions, methods, steps and Hydra's own keys pass to Hydra untouched
    # a top-level key and a config group's option: the nearest one named, before Hydra's multi-line message
    with pytest.raises(ConfigError, match=r"^modle: unknown key \(did you mean model=lenet5\?\)"):
        check_override_keys(["modle=lenet5"])
    with pytest.raises(ConfigError, match=r"^model=lenet_5: no such model; did you mean model=lenet5\? choose one of "):
        check_override_keys(["model=lenet_300_100,lenet_5"])
    with pytest.raises(ConfigError, match=r"^method=lotery_ticket: no such method; did you mean method=lottery_ticket\?"):
        check_override_keys(["+method=lotery_ticket"])
    with pytest.raises(ConfigError, match=r"^device=coral: no such device; did you mean device=coral_dev_board\?"):
        check_override_keys(["device=coral"])
    check_override_keys(["model=lenet5,conv2", "+sweep=bit_ladder", "seed=0,1", "export=device", "~method",
                         "model=${oc.env:M}", "+preset=quick", "hydra/launcher=joblib", "+method=null"])
    check_override_keys(["trainer.max_epochs=1,2", "+method=low_rank", "method.energy=0.5", "steps.0.ratio=0.3",
                         "hydra.job.chdir=false", "data.canvas=60", "seed=3"])


def test_the_command_line_says_a_typo_in_one_line(tmp_path):
    import os
    from pathlib import Path

    out = subprocess.run([sys.executable, "-m", "edgebench", "trainer.max_epoch=3"], capture_output=True, text=True,
                         cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    assert out.returncode == 2
    assert out.stderr.strip().splitlines()[-1].startswith("edgebench: error: trainer.max_epoch: unknown key (did you mean")
