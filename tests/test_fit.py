"""``python -m edgebench.fit``: every device, every file a runtime of it loads, fit, bytes, RAM, latency with its band
or 'uncalibrated', and what would make the model fit, without training or exporting."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from edgebench import fit

ROOT = Path(__file__).resolve().parents[1]


def _json(capsys, *argv):
    assert fit.main([*argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_a_zoo_model_on_a_microcontroller_says_what_would_make_it_fit(capsys):
    out = _json(capsys, "model=lenet5", "--device", "stm32l4")
    by = {o["exporter"]: o for o in out["options"]}
    own = by["onnx"]
    assert own["own"] and not own["fits"] and "cannot load a onnx file" in own["reasons"][0]
    micro = by["tflite_micro"]
    assert micro["fits"] and micro["needs"].startswith("+method=ptq_int8")
    assert micro["runtime"] == "TFLite Micro with CMSIS-NN kernels" and micro["latency_low_ms"] is not None
    assert micro["bytes"] * 4 == own["bytes"]  # int8 weights: a quarter of fp32
    # it fits as it is, as a float TFLite Micro file: the advice needs no other step
    assert out["advice"]["stm32l4"] == "fp32 TFLite Micro (export=tflite_micro_fp32)"
    assert any("arena" in n for n in micro["notes"])  # the RAM is the arena estimate, with its band
    flt = by["tflite_micro_fp32"]
    assert flt["fits"] and flt["needs"] == "" and flt["bytes"] == own["bytes"]
    assert flt["runtime"] == "TFLite Micro, reference kernels" and flt["latency_ms"] is None  # not calibrated: none
    assert flt["ram_bytes"] > micro["ram_bytes"]  # 4-byte activations


def test_every_profile_is_answered_and_uncalibrated_figures_say_so(capsys):
    out = _json(capsys, "model=lenet_300_100")
    devices = {o["device"] for o in out["options"]}
    assert "host" not in devices and {"stm32l4", "coral_dev_board", "vcu128", "esp32_s3"} <= devices
    for o in out["options"]:
        if o["latency_ms"] is not None and o["latency_low_ms"] is None:
            assert "uncalibrated" in o["latency"]
    assert out["advice"]["vcu128"].startswith("nothing edgebench writes fits")
    assert out["advice"]["coral_dev_board"] == "fp32 TFLite (export=tflite)"  # on its CPU (no edgetpu_compiler)


def test_a_runs_own_file_is_shown_with_its_measured_figures(capsys, monkeypatch):
    own = {"exporter": "tflite_micro", "format": "tflite_micro", "dtype": "int8", "bytes": 75_312.0,
           "arena": 10_624.0, "params": 61_706.0, "method": "ptq_int8"}
    monkeypatch.setattr(fit, "_from_run", lambda run_id: (["model=lenet5", "data=digits"], own))
    out = _json(capsys, "0123456789abcdef", "--device", "arduino_nano_33_ble_sense")
    (mine,) = [o for o in out["options"] if o["own"]]
    assert mine["exporter"] == "tflite_micro" and mine["bytes"] == 75_312 and mine["bytes_measured"]
    assert mine["ram_bytes"] == 10_624 and mine["ram_source"] == "tflm_arena" and mine["needs"] == ""
    assert out["advice"]["arduino_nano_33_ble_sense"] == "fits as it is"
    assert out["model"].startswith("run 0123456789abcdef (ptq_int8")


@pytest.mark.parametrize("argv, message", [
    (["model=lenet55"], "model=lenet55: no such model; did you mean model=lenet5?"),
    (["modle=lenet5"], "modle: unknown key (did you mean model=lenet5?)"),
    (["model=lenet5", "--device", "stm32"], "--device stm32: no such profile; did you mean --device stm32h7?"),
    (["model=lenet5", "--device", "jetson_nano"], "did you mean --device jetson_nano_2gb?"),
])
def test_bad_input_is_one_line_with_the_fix(capsys, argv, message):
    assert fit.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("edgebench.fit: error: ") and message in err and "\n" not in err


def test_the_readme_fit_commands_run_as_written(capsys):
    blocks = "\n".join(re.findall(r"^```bash\n(.*?)^```", (ROOT / "README.md").read_text(), re.M | re.S))
    cmds = sorted(set(re.findall(r"python -m edgebench\.fit ([^#\n]*?)\s*(?:#|\n)", blocks)))
    assert cmds, "the README shows python -m edgebench.fit"
    for args in cmds:
        assert fit.main(args.split()) == 0, args
        assert "where it fits" in capsys.readouterr().out
