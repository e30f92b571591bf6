"""Masks: which entries of which tensors a compressed model keeps.

One type for every method that zeroes entries: unstructured pruning, lottery tickets, the zeros an
earlier chain step left that a later step's retraining must keep, and (next) the sparse part of
low rank + sparse. A :class:`Mask` maps tensor names as in ``state_dict`` (``"fc1.weight"``) to
boolean tensors of the same shape (True = kept). It checks itself when built (boolean, 0/1 only)
and against a model before it touches one (every name a tensor of that model, same shape), and
saves to / loads from a versioned ``torch.save`` file.

Holding a mask during training uses ``torch.nn.utils.prune``: the tensor becomes
``<name>_orig * <name>_mask`` in every forward pass, so masked entries stay zero through any
optimizer; :func:`bake` makes the zeros permanent and removes the reparametrisation.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator, Mapping

import torch
from torch import nn
from torch.nn.utils import prune

FORMAT = 1


def _owner(model: nn.Module, name: str) -> tuple[nn.Module, str]:
    mod, _, attr = name.rpartition(".")
    return (model.get_submodule(mod) if mod else model), attr


def tensors_of(model: nn.Module) -> dict[str, torch.Tensor]:
    """The model's maskable tensors by name: parameters, and held tensors under their own name (not ``_orig``)."""
    out = {n: p for n, p in model.named_parameters()}
    for n in list(out):
        if n.endswith("_orig"):
            out[n[: -len("_orig")]] = out.pop(n)
    return out


class Mask(Mapping[str, torch.Tensor]):
    """Kept entries (True) of named tensors; see the module docstring."""

    def __init__(self, tensors: Mapping[str, torch.Tensor]):
        masks = {}
        for name, t in tensors.items():
            if not isinstance(name, str) or not name:
                raise ValueError(f"mask: tensor names must be non-empty strings, got {name!r}")
            if not isinstance(t, torch.Tensor):
                raise ValueError(f"mask for {name}: expected a tensor, got {type(t).__name__}")
            if t.dtype != torch.bool:
                if t.is_floating_point() and not bool(torch.isfinite(t).all()):
                    raise ValueError(f"mask for {name}: holds NaN or infinite values")
                if not bool(((t == 0) | (t == 1)).all()):
                    raise ValueError(f"mask for {name}: entries must be 0/1 or boolean")
            masks[name] = t.detach().to("cpu", torch.bool)
        self._masks = masks

    # -- mapping
    def __getitem__(self, name: str) -> torch.Tensor:
        return self._masks[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._masks)

    def __len__(self) -> int:
        return len(self._masks)

    def __repr__(self) -> str:
        return f"Mask({len(self)} tensors, {100 * self.kept():.1f}% kept)"

    # -- making
    @classmethod
    def ones(cls, model: nn.Module, names: list[str] | None = None) -> "Mask":
        """Keep everything of ``names`` (default: the weights of the conv and linear layers)."""
        ts = tensors_of(model)
        names = names if names is not None else weight_names(model)
        return cls({n: torch.ones_like(ts[n], dtype=torch.bool) for n in names})

    @classmethod
    def held(cls, model: nn.Module) -> "Mask":
        """The masks ``model`` holds now (:meth:`hold`), and all-ones for conv/linear weights it holds none for."""
        held = {n[: -len("_mask")]: b for n, b in model.named_buffers() if n.endswith("_mask")}
        ts = tensors_of(model)
        return cls({**{n: torch.ones_like(ts[n], dtype=torch.bool) for n in weight_names(model)}, **held})

    @classmethod
    def nonzero(cls, model: nn.Module) -> "Mask":
        """The nonzero entries of every weight matrix or kernel (dim > 1) that has zeros: what a step pruned."""
        return cls({n: p != 0 for n, p in tensors_of(model).items()
                    if n.endswith("weight") and p.dim() > 1 and bool((p == 0).any())})

    def random_like(self, seed: int) -> "Mask":
        """A random mask keeping exactly as many entries of every tensor."""
        g = torch.Generator().manual_seed(seed)
        out = {}
        for n, m in self.items():
            flat = torch.zeros(m.numel(), dtype=torch.bool)
            flat[torch.randperm(m.numel(), generator=g)[: int(m.sum())]] = True
            out[n] = flat.view_as(m)
        return Mask(out)

    # -- figures
    def kept(self) -> float:
        """Share of the masked entries kept, over all tensors."""
        total = sum(m.numel() for m in self.values())
        return sum(int(m.sum()) for m in self.values()) / total if total else 1.0

    def zeros(self, name: str) -> int:
        return int((~self[name]).sum())

    # -- checking and using
    def check(self, model: nn.Module) -> None:
        """Raise ``ValueError`` unless every masked tensor exists in ``model`` with the mask's shape."""
        ts = tensors_of(model)
        missing = [n for n in self if n not in ts]
        if missing:
            raise ValueError(f"mask names tensor(s) {', '.join(missing)} that {type(model).__name__} does not have; "
                             f"its tensors are: {', '.join(ts)}")
        wrong = [f"{n} {tuple(self[n].shape)} vs {tuple(ts[n].shape)}" for n in self if self[n].shape != ts[n].shape]
        if wrong:
            raise ValueError(f"mask shape does not match the model: {'; '.join(wrong)}")

    def hold(self, model: nn.Module) -> nn.Module:
        """Keep masked entries at zero in every forward pass while ``model`` trains (until :func:`bake`)."""
        self.check(model)
        for n, m in self.items():
            owner, attr = _owner(model, n)
            prune.custom_from_mask(owner, attr, m.to(getattr(owner, attr).device))
        return refresh(model)

    @torch.no_grad()
    def apply(self, model: nn.Module) -> nn.Module:
        """Zero the masked entries of ``model`` in place, once (no reparametrisation)."""
        self.check(model)
        ts = tensors_of(model)
        for n, m in self.items():
            ts[n].mul_(m.to(ts[n].device, ts[n].dtype))
        return refresh(model)

    def bind(self, net: nn.Module) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """(parameter, mask) pairs for ``net``, which may wrap or parametrise the masked model: a parameter
        matches a masked tensor when its name ends with that name (after ``parametrizations.`` and
        ``.original`` are dropped) and the shapes agree."""
        pairs = []
        for name, p in net.named_parameters():
            name = name.replace("parametrizations.", "").replace(".original", "")
            for n, m in self.items():
                if (name == n or name.endswith("." + n)) and p.shape == m.shape:
                    pairs.append((p, m.to(p.device)))
                    break
        return pairs

    # -- files
    def save(self, path: str | Path) -> None:
        torch.save({"format": FORMAT, "kind": "edgebench.Mask", "masks": dict(self._masks)}, path)

    @classmethod
    def load(cls, path: str | Path, model: nn.Module | None = None) -> "Mask":
        """Read a saved mask; with ``model``, also check it fits. Raises ``ValueError`` naming the file."""
        obj = torch.load(path, map_location="cpu", weights_only=True)
        if not (isinstance(obj, dict) and obj.get("kind") == "edgebench.Mask" and isinstance(obj.get("masks"), dict)):
            raise ValueError(f"{path} is not a saved edgebench mask")
        if obj.get("format") != FORMAT:
            raise ValueError(f"{path}: mask format {obj.get('format')} is not {FORMAT}; remake it")
        mask = cls(obj["masks"])
        if model is not None:
            mask.check(model)
        return mask


def weight_names(model: nn.Module) -> list[str]:
    """``<layer>.weight`` of every conv and linear layer (the tensors pruning masks by default)."""
    from edgebench.measure.size import weight_layers

    return [f"{n}.weight" for n, _ in weight_layers(model)]


def refresh(model: nn.Module) -> nn.Module:
    """Recompute every held tensor outside autograd, so the model can be copied at any point."""
    with torch.no_grad():
        for m in model.modules():
            for hook in m._forward_pre_hooks.values():
                if isinstance(hook, prune.BasePruningMethod):
                    setattr(m, hook._tensor_name, hook.apply_mask(m))
    return model


def bake(model: nn.Module) -> nn.Module:
    """Make held masks permanent: zeros in the tensor, no ``_orig``/``_mask`` left."""
    for m in model.modules():
        for hook in list(m._forward_pre_hooks.values()):
            if isinstance(hook, prune.BasePruningMethod):
                prune.remove(m, hook._tensor_name)
    return model
