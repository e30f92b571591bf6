"""Run names: what tells runs apart comes first and short, since the MLflow UI's runs table shows about 20
characters of a name; the full description of a run goes to its tag ``edgebench.description``.

    s=0.8 magnitude · lenet_300_100 digits host           +method=magnitude_pruning method.sparsity=0.8
    ptq_int8 tflite_int8 · lenet5 digits host             +method=ptq_int8 export=tflite_int8 model=lenet5
    seed=1 dense · lenet_300_100 digits host              a job of the sweep seed=0,1
"""

from __future__ import annotations

from typing import Any, Iterable

DESCRIPTION_TAG = "edgebench.description"
# A sweep's tags, written by edgebench.sweep and read by the report layer (which never imports the sweep).
PARENT_TAG = "edgebench.sweep_parent"  # on a sweep's parent run: its sweep id
REUSED_TAG = "sweep.reused"  # parent tag sweep.reused.<job num> = the earlier FINISHED run a resumed job returned
# A run's chain of methods (``a->b``, ``none`` for a dense run) and, on a chain's earlier step's child run, its index.
CHAIN_TAG, STEP_TAG = "chain", "chain.step"
# Tags renamed in issue 26 -> the name runs logged before carry; readers fall back to it.
RENAMED_TAGS = {CHAIN_TAG: "pipeline", STEP_TAG: "pipeline.step"}

# A method's key knobs: shown in the name even at their default value, under these short labels.
KEY_KNOBS = {"sparsity": "s", "ratio": "r", "bits": "b", "energy": "e", "levels": "L"}
SHORT = {**KEY_KNOBS, "retrain_epochs": "ep", "finetune_epochs": "ep", "epochs": "ep", "max_epochs": "ep"}
# Groups shown by the option's name alone (``lenet5``, not ``model=lenet5``).
# experiment and pipeline: the old names of preset and chain, still accepted (edgebench.config.RENAMED_GROUPS).
CHOICES = ("model", "data", "device", "export", "preset", "chain", "sweep", "experiment", "pipeline")


def short_method(name: str) -> str:
    """``magnitude_pruning`` -> ``magnitude``; other method names as they are."""
    return name.removesuffix("_pruning")


def swept_from_overrides(overrides: list[str]) -> list[str]:
    """The keys of the overrides that take several values (``a=1,2``, ``range(...)``, ``glob(...)``, ...)."""
    return [o.split("=", 1)[0] for o in overrides
            if "=" in o and any(t in o.split("=", 1)[1] for t in (",", "range(", "choice(", "interval(", "glob("))]


def _key(override: str) -> tuple[str, str]:
    key, _, value = override.partition("=")
    return key.lstrip("+~"), value


def short_value(key: str, value: Any) -> str:
    """One value as the name shows it: ``s=0.8``, ``lr=0.01``, ``lenet5``, ``seed=1``."""
    if key in CHOICES:
        return str(value)
    if key == "method":
        return ",".join(short_method(v) for v in str(value).split(","))
    last = key.rsplit(".", 1)[-1]
    return f"{SHORT.get(last, last)}={value}"


def run_name(method: str, step_configs: Iterable[Any], export: str, choices: dict[str, str],
             overrides: list[str], swept: Iterable[str] = ()) -> str:
    """``<swept values, key knobs, other method values> <method> <export if not auto> · <model> <data> <device>``.

    ``method``: the method's name, a chain's ``a->b`` or a named chain's name (``+chain=NAME``; ``dense`` for none); ``step_configs``:
    the typed configs of the steps (their key knobs are read from them); ``overrides``: the command line's (or the
    sweep job's) ``key=value`` overrides; ``swept``: the keys a sweep varies."""
    swept = {k.lstrip("+~") for k in swept}
    first: list[str] = []

    def add(label: str) -> None:
        if label not in first:
            first.append(label)

    for o in overrides:  # what a sweep varies, in the order given
        key, value = _key(o)
        if "=" in o and key in swept and key not in ("method", "export"):
            add(short_value(key, value))
    for cfg in step_configs:  # the method's key knobs, given or not
        for knob, label in KEY_KNOBS.items():
            value = getattr(cfg, knob, None)
            if knob == "energy" and getattr(cfg, "ratio", None) is not None:
                continue  # low rank: a parameter budget replaces the energy
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                add(f"{label}={value:g}")
    for o in overrides:  # the method's other values given on the command line
        key, value = _key(o)
        if "=" in o and key.startswith(("method.", "steps.")) and key.rsplit(".", 1)[-1] not in KEY_KNOBS:
            add(short_value(key, value))
    middle = [short_method(p) for p in method.split("->")]
    tail = [choices[k] for k in ("model", "data", "device") if k not in swept]
    return " ".join([*first, "->".join(middle), *([export] if export != "auto" else []), "·", *tail])


def description(method: str, export: str, choices: dict[str, str], overrides: list[str]) -> str:
    """Every choice and override of a run, in full: the ``edgebench.description`` tag."""
    given = [f"method={method}", *(f"{k}={choices[k]}" for k in ("model", "data", "device")), f"export={export}"]
    rest = [o for o in overrides if _key(o)[0] not in ("method", "model", "data", "device", "export")]
    return " ".join(given + rest)[:5000]


def sweep_name(overrides: list[str], swept: Iterable[str], sid: str) -> str:
    """A sweep's parent run: its named sweep (``+sweep=NAME``) and what it varies, short and in the order given, then ``sweep <id>``:
    ``magnitude,random s=0.5,0.8,0.9 · sweep sw-…``, ``leaderboard · sweep sw-…``."""
    swept = {k.lstrip("+~") for k in swept} | {"sweep"}
    values = [short_value(*_key(o)) for o in overrides if "=" in o and _key(o)[0] in swept]
    return " ".join([*values, "·", f"sweep {sid}"]) if values else f"sweep {sid}"
