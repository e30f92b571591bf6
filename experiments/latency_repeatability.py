"""Is a host latency figure repeatable? The same model measured twice in a row must agree within 10% (median).

For each model: export to ONNX once, then run the edgebench latency protocol (warm-up, >= 100
calls, fixed threads, noise re-measurement) twice back to back on the same session and compare
the two medians. Run it on an otherwise idle machine.

    python experiments/latency_repeatability.py   # -> results/latency_repeatability.json
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import torch

from edgebench.config import ModelConfig
from edgebench.export import export_onnx
from edgebench.measure import measure_latency
from edgebench.measure.latency import onnxruntime_runner
from edgebench.models import build_model

MODELS = [("lenet_300_100", (1, 28, 28), 10), ("resnet20", (3, 32, 32), 10), ("mobilenet_v2", (3, 224, 224), 1000),
          ("resnet18", (3, 224, 224), 1000)]


# The pass/fail threshold, fixed before the experiment runs (issue 3: the same latency measured twice in a row on an
# idle machine agrees within 10%, median).
MAX_DIFFERENCE = 0.10
SOURCE = "issue 3: two measurements in a row agree within 10% (p50)"

def main() -> None:
    threads = torch.get_num_threads()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, shape, classes in MODELS:
            torch.manual_seed(0)
            x = torch.randn(1, *shape)
            art = export_onnx(build_model(ModelConfig(name=name), shape, classes).eval(), x, Path(tmp) / name / "m.onnx")
            run = onnxruntime_runner(art.path, x, threads)
            a = measure_latency({"m": run}, threads=threads)["m"]
            b = measure_latency({"m": run}, threads=threads)["m"]
            diff = abs(b.p50_ms / a.p50_ms - 1)
            rows.append({"model": name, "input": list(shape), "first_p50_ms": a.p50_ms, "second_p50_ms": b.p50_ms,
                         "first_iqr_ms": a.iqr_ms, "second_iqr_ms": b.iqr_ms, "relative_difference": diff,
                         "within_10_percent": diff <= MAX_DIFFERENCE})
            print(f"{name:15s} {a.p50_ms:8.3f} ms then {b.p50_ms:8.3f} ms  difference {diff:.1%}", flush=True)
    result = {"date": time.strftime("%Y-%m-%d %H:%M"), "threads": threads, "runtime": "onnxruntime fp32 batch 1",
              "calls_per_measurement": 100, "rows": rows,
              "threshold": {"max_relative_difference": MAX_DIFFERENCE, "source": SOURCE}, "all_within_10_percent": all(r["within_10_percent"] for r in rows)}
    out = Path("results/latency_repeatability.json")
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"all within 10%: {result['all_within_10_percent']} -> {out}")


if __name__ == "__main__":
    main()
