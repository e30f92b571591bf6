"""What a study hook reads besides the runs: an arm's config as the runner composed it, and the dense model its
runs trained (the stored baseline of one seed), for measurements on the weights (never for the runs' metrics)."""

from __future__ import annotations

from pathlib import Path

import torch


def arm_spec(study, arm: str, context: dict, seed: int | None = None):
    """The validated config of ``arm``'s run of ``seed`` (default: the budget's first), composed as the runner does
    (the same results dir, so the same store)."""
    from edgebench import pipeline
    from edgebench import study as st
    from edgebench.config import validate

    budget = context["budget"]
    seed = study.budgets[budget].seeds[0] if seed is None else seed
    overrides = st.run_overrides(study, arm, budget, context.get("results_dir")) + [f"seed={seed}"]
    return validate(pipeline.compose(overrides, context.get("root") or Path.cwd()))


def arm_step(study, arm: str, context: dict):
    """The typed config of ``arm``'s first compression step."""
    from edgebench import methods

    spec = arm_spec(study, arm, context)
    return methods.parse_steps(spec.method, spec.steps)[0]


def dense_model(study, arm: str, context: dict, seed: int | None = None):
    """``arm``'s stored dense baseline of ``seed`` (evaluation mode) and its data's splits; FileNotFoundError when the
    study has not trained it (in this results dir)."""
    from edgebench import cache
    from edgebench.data import load_data
    from edgebench.models import build_model

    spec = arm_spec(study, arm, context, seed)
    splits = load_data(spec.data, spec.paths.data_dir)
    entry = cache.entry_dir(spec.paths.store_dir, spec, splits.digest)
    if not (entry / "model.pt").exists():
        raise FileNotFoundError(f"no stored dense model for arm {arm!r} in {entry}: run the study first")
    net = build_model(spec.model, splits.input_shape, splits.num_classes)
    net.load_state_dict(torch.load(entry / "model.pt", weights_only=True))
    return net.eval(), splits
