"""Device profiles: fit checks and roofline latency/energy estimates (see estimate.py)."""

from edgebench.devices.estimate import DeviceReport, estimate_latency_s, evaluate_device, host_profile

__all__ = ["DeviceReport", "estimate_latency_s", "evaluate_device", "host_profile"]
