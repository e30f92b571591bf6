"""Compression methods: ``+method=NAME`` picks conf/method/NAME.yaml, parsed into its typed schema here;
``steps=[a,b]`` chains several (each a step), checked for compatibility before any training.

Each method module registers ``NAME -> (config dataclass, Method class)`` in ``REGISTRY``.
"""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from edgebench.config import ConfigError
from edgebench.methods.base import CompressionResult, Method, MethodContext
from edgebench.methods.distillation import DISTILLATION
from edgebench.methods.lottery import LOTTERY
from edgebench.methods.low_rank import LOW_RANK
from edgebench.methods.pruning import STRUCTURED, UNSTRUCTURED
from edgebench.methods.quantization import HALF, INT8, WEIGHT_QUANT

REGISTRY: dict[str, tuple[type, type[Method]]] = {**UNSTRUCTURED, **STRUCTURED, **LOTTERY, **HALF, **INT8,
                                                  **WEIGHT_QUANT, **DISTILLATION, **LOW_RANK}


def parse(node: Any):
    """Turn the composed ``method`` node into its typed config; errors name ``method.<key>``."""
    if node is None:
        return None
    if not isinstance(node, (dict, DictConfig)) or "name" not in node:
        raise ConfigError("method: expected a method config with a `name` (use +method=NAME)")
    name = node["name"]
    if name not in REGISTRY:
        raise ConfigError(f"method.name: unknown method {name!r}; available: {', '.join(sorted(REGISTRY))}")
    schema, _ = REGISTRY[name]
    aliases = getattr(schema, "yaml_aliases", {})  # YAML keys that are Python keywords (kure's `lambda`)
    if aliases:
        node = {aliases.get(k, k): v for k, v in OmegaConf.to_container(OmegaConf.create(node)).items()}
    try:
        merged = OmegaConf.merge(OmegaConf.structured(schema), node)
        return OmegaConf.to_object(merged)
    except ConfigError:
        raise
    except OmegaConfBaseException as e:
        msg = str(e).replace("full_key: ", "full_key: method.")
        for key, attr in aliases.items():
            msg = msg.replace(attr, key)
        raise ConfigError(f"method ({name}): {msg}") from None


def parse_steps(method: Any, steps: Any) -> list:
    """The typed configs of a run's compression steps, in order: ``+method=NAME`` is a chain of one step,
    ``steps=[a,b]`` (names, or ``{name: a, key: value}`` dicts) a longer one. The chain is checked
    (:func:`check_chain`) before anything is trained."""
    if method is not None and steps:
        raise ConfigError("method and steps: give either +method=NAME (one step) or steps=[...] (a chain), not both")
    if method is not None:
        return [parse(method)]
    configs = []
    for i, item in enumerate(steps or []):
        node = {"name": item} if isinstance(item, str) else item
        try:
            configs.append(parse(node))
        except ConfigError as e:
            raise ConfigError(f"steps.{i}: {e}".replace("method.", f"steps.{i}.")) from None
    check_chain([build(c) for c in configs])
    return configs


def check_chain(steps: list[Method]) -> None:
    """Refuse a chain in which a step cannot take what the step before it hands on."""
    kind = "dense"
    for i, step in enumerate(steps):
        if kind not in step.accepts:
            prev = f"steps.{i - 1} ({steps[i - 1].name}) hands on a {kind} model" if i else "it would be the first step"
            fix = {"deployable": f"a low-precision file is final: make {steps[i - 1].name} the last step",
                   "weight_shared": f"weight sharing is final: make {steps[i - 1].name} the last step"}.get(
                kind, f"{step.name} must be the first step")
            raise ConfigError(f"steps.{i} ({step.name}) cannot follow: {prev}, and {step.name} takes only "
                              f"{' or '.join(step.accepts)} models; {fix}")
        kind = step.produces


def build(cfg) -> Method | None:
    """The Method object for a parsed method config (None for the dense baseline)."""
    if cfg is None:
        return None
    return REGISTRY[cfg.name][1](cfg)


__all__ = ["REGISTRY", "parse", "parse_steps", "check_chain", "build", "Method", "MethodContext", "CompressionResult"]
