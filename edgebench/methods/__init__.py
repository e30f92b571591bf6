"""Compression methods: ``+method=NAME`` picks conf/method/NAME.yaml, parsed into its typed schema here.

Each method module registers ``NAME -> (config dataclass, Method class)`` in ``REGISTRY``.
"""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from edgebench.config import ConfigError
from edgebench.methods.base import CompressionResult, Method, MethodContext
from edgebench.methods.lottery import LOTTERY
from edgebench.methods.pruning import STRUCTURED, UNSTRUCTURED
from edgebench.methods.quantization import HALF, INT8, WEIGHT_QUANT

REGISTRY: dict[str, tuple[type, type[Method]]] = {**UNSTRUCTURED, **STRUCTURED, **LOTTERY, **HALF, **INT8,
                                                  **WEIGHT_QUANT}


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


def build(cfg) -> Method | None:
    """The Method object for a parsed method config (None for the dense baseline)."""
    if cfg is None:
        return None
    return REGISTRY[cfg.name][1](cfg)


__all__ = ["REGISTRY", "parse", "build", "Method", "MethodContext", "CompressionResult"]
