"""Chains of compression steps: spelling, presets, per-step overrides, and impossible chains refused early."""

from __future__ import annotations

import pytest

from edgebench import methods
from edgebench.config import ConfigError, validate


def _steps(make_cfg, *overrides):
    spec = validate(make_cfg("data=digits", *overrides))
    return methods.parse_steps(spec.method, spec.steps)


def test_method_is_a_chain_of_one_step(make_cfg):
    assert [c.name for c in _steps(make_cfg, "+method=magnitude_pruning")] == ["magnitude_pruning"]
    assert _steps(make_cfg) == []  # the dense baseline


@pytest.mark.parametrize("overrides,expected", [
    (["steps=[magnitude_pruning,ptq_int8]"], [("magnitude_pruning", 0.9), ("ptq_int8", None)]),
    (["steps=[{name:magnitude_pruning,sparsity:0.5},ptq_int8]"], [("magnitude_pruning", 0.5), ("ptq_int8", None)]),
    (["+pipeline=deep_compression"], [("magnitude_pruning", 0.92), ("nonuniform_quant", None)]),
    (["+pipeline=deep_compression", "steps.0.sparsity=0.8"], [("magnitude_pruning", 0.8), ("nonuniform_quant", None)]),
    (["+pipeline=prune_int8"], [("structured_pruning", None), ("ptq_int8", None)]),
])
def test_spellings_presets_and_per_step_overrides(make_cfg, overrides, expected):
    assert [(c.name, getattr(c, "sparsity", None)) for c in _steps(make_cfg, *overrides)] == expected


def test_deep_compression_preset_settings(make_cfg):
    prune, share = _steps(make_cfg, "+pipeline=deep_compression", "steps.1.bits=6")
    assert (prune.schedule, prune.rounds, share.bits) == ("iterative", 3, 6)


@pytest.mark.parametrize("steps,message", [
    ("[ptq_int8,magnitude_pruning]", r"steps\.1 \(magnitude_pruning\) cannot follow: steps\.0 \(ptq_int8\) hands on a "
                                     r"deployable model.*make ptq_int8 the last step"),
    ("[fp16,qat_int8]", r"steps\.1 \(qat_int8\) cannot follow: steps\.0 \(fp16\)"),
    ("[nonuniform_quant,structured_pruning]", r"steps\.1 \(structured_pruning\).*weight sharing is final"),
    ("[magnitude_pruning,lottery_ticket]", r"steps\.1 \(lottery_ticket\).*lottery_ticket must be the first step"),
    ("[magnitude_pruning,nosuch]", r"steps\.1: steps\.1\.name: unknown method 'nosuch'"),
    ("[{name:magnitude_pruning,sparsityy:0.5}]", r"steps\.0.*sparsityy"),
])
def test_impossible_chains_are_refused_naming_the_steps(make_cfg, steps, message):
    with pytest.raises(ConfigError, match=message):
        _steps(make_cfg, f"steps={steps}")


def test_method_and_steps_together_are_refused(make_cfg):
    with pytest.raises(ConfigError, match="either \\+method=NAME .* or steps"):
        _steps(make_cfg, "+method=fp16", "steps=[ptq_int8]")
