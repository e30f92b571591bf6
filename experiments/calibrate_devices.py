"""Fit each device profile's efficiencies on the published latencies of edgebench.devices.calibration.

    python experiments/calibrate_devices.py      # writes results/device_calibration.json

Per device it fits the compute efficiency and, where the points include models with and without
depthwise convolutions, a separate depthwise efficiency (the profile's inference_overhead_s is an
input), then refits without each point in turn and predicts it: the leave-one-out error. A device
with one point gets "error band unknown". Copy the printed efficiencies and error band into
conf/device/<name>.yaml (tests check that the profiles reproduce the points).
"""

from __future__ import annotations

import json
from pathlib import Path

from omegaconf import OmegaConf

from edgebench.config import DeviceConfig, config_dir
from edgebench.devices.calibration import NOT_USED, calibrate


def load_profile(name: str) -> DeviceConfig:
    return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(DeviceConfig),
                                               OmegaConf.load(config_dir() / "device" / f"{name}.yaml")))


def main() -> None:
    names = [p.stem for p in (config_dir() / "device").glob("*.yaml")]
    result = calibrate({n: load_profile(n) for n in names})
    for device, d in result.items():
        dw = "none (= compute)" if d["depthwise_efficiency"] is None else f"{d['depthwise_efficiency']:.4g}"
        print(f"{device}: compute_efficiency = {d['compute_efficiency']:.4g}, depthwise_efficiency = {dw}, "
              f"inference_overhead_s = {d['inference_overhead_s']:g}; error band: {d['error_band']}")
        for pt in d["points"]:
            loo = f", leave-one-out {pt['leave_one_out_ms']:.3g} ms ({pt['leave_one_out_error']:+.0%})" \
                if "leave_one_out_ms" in pt else ""
            print(f"   {pt['model']} {pt['input']} {pt['dtype']}: {pt['macs'] / 1e6:.1f} MMACs "
                  f"({pt['depthwise_macs'] / 1e6:.1f} depthwise), published {pt['published_ms']:.3g} ms, "
                  f"fit {pt['fit_ms']:.3g} ms ({pt['fit_error']:+.0%}){loo}")
        for v in d.get("validation", []):
            print(f"   not fitted: {v['model']} {v['input']}: published {v['published_ms']:.3g} ms, "
                  f"estimate {v['estimate_ms']:.3g} ms ({v['error']:+.0%}) -- {v['not_fitted_because']}")
    result["_not_used"] = NOT_USED
    out = Path("results/device_calibration.json")
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"-> {out}")


if __name__ == "__main__":
    main()
