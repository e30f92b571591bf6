"""Fit each device profile's compute efficiency on the published latencies of edgebench.devices.calibration.

    python experiments/calibrate_devices.py      # writes results/device_calibration.json

Copy the printed efficiencies into conf/device/<name>.yaml (tests check that they reproduce the points).
"""

from __future__ import annotations

import json
from pathlib import Path

from omegaconf import OmegaConf

from edgebench.config import config_dir
from edgebench.config import DeviceConfig
from edgebench.devices.calibration import calibrate


def load_profile(name: str) -> DeviceConfig:
    return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(DeviceConfig),
                                               OmegaConf.load(config_dir() / "device" / f"{name}.yaml")))


def main() -> None:
    names = [p.stem for p in (config_dir() / "device").glob("*.yaml")]
    result = calibrate({n: load_profile(n) for n in names})
    for device, d in result.items():
        print(f"{device}: compute_efficiency = {d['efficiency']:.4f}")
        for pt in d["points"]:
            loo = f", leave-one-out {pt['leave_one_out_ms']:.1f} ms ({pt['leave_one_out_error']:+.0%})" \
                if "leave_one_out_ms" in pt else ""
            print(f"   {pt['model']} {pt['input']}: {pt['macs'] / 1e6:.1f} MMACs, published {pt['published_ms']:.1f} ms, "
                  f"own efficiency {pt['efficiency']:.4f}{loo}")
    out = Path("results/device_calibration.json")
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"-> {out}")


if __name__ == "__main__":
    main()
