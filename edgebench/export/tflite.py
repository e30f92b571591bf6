"""TFLite and TFLite Micro artifacts: ``tflite`` (fp32), ``tflite_int8`` and ``tflite_micro`` (full-integer int8).

The route (shared/reference/next_methods_and_tflite.md, verified on this kind of machine):
``torch.export`` with ``strict=True`` (without it residual adds stay float) -> litert-torch
(``litert_torch.convert``) -> a ``.tflite`` flatbuffer. Full-integer int8 goes through PT2E:
litert-torch's ``PT2EQuantizer`` with per-channel symmetric weights, torchao's ``prepare_pt2e``,
calibration one training sample at a time (the export is batch-1 static), ``convert_pt2e``; inputs
and outputs are int8 as well. LiteRT (``ai-edge-litert``) runs the file on the host (accuracy and
latency); TFLite Micro's Python interpreter (``tflite-micro``) runs the same file with TFLM's
kernels and reports the tensor arena it needs (``tflite_micro``: the arena is measured, and the
model is written as a C array an Arduino / STM32 project includes). Each is timed in LiteRT beside the dense
model's fp32 ``.tflite`` (``baseline="tflite"``); ops the route cannot take are refused on the untrained model
(``precheck``: :func:`check_convertible`, :func:`check_convertible_int8`).

The packages are the ``[tflite]`` extra; an exporter here is refused before any training when
they are missing (:func:`missing`).
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import logging
import os
import re
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from edgebench.config import ConfigError
from edgebench.export.artifact import Artifact, QuantSpec
from edgebench.export.registry import register

log = logging.getLogger(__name__)

PACKAGES = {"litert_torch": "litert-torch", "ai_edge_litert": "ai-edge-litert", "tflite_micro": "tflite-micro"}
CALIBRATION_SAMPLES = 256  # batch-1 calibration passes (of the step's calibration batches): ranges settle well before
ALIGN = 16  # TFLM wants the model buffer 16-byte aligned



class CannotRun(ValueError):
    """A file TFLite Micro cannot run at any arena size tried (a format that cannot hold the model)."""


def missing(micro: bool = False) -> list[str]:
    """The pip names of the TFLite packages that are not installed (``micro``: TFLite Micro's too)."""
    need = [m for m in PACKAGES if m != "tflite_micro" or micro]
    return [PACKAGES[m] for m in need if importlib.util.find_spec(m) is None]


def require(name: str, micro: bool = False) -> None:
    gone = missing(micro)
    if gone:
        raise ConfigError(f"export={name} needs {', '.join(gone)}: install the tflite extra "
                          f"(pip install -e '.[tflite]', or make setup)")


@contextlib.contextmanager
def _quiet():
    """What the converter and the interpreters print from C++ and Python (progress lines, TFLM's
    allocation failures while the arena is bisected) is captured, not shown: ``out["text"]``."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    logging.getLogger("absl").setLevel(logging.ERROR)
    logging.getLogger("torch.utils._pytree").setLevel(logging.ERROR)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    out: dict[str, str] = {}
    py = io.StringIO()  # Python-level writers (rich progress lines) where sys.stdout is not fd 1 (pytest)
    with tempfile.TemporaryFile(mode="w+b") as f, contextlib.redirect_stdout(py), contextlib.redirect_stderr(py):
        os.dup2(f.fileno(), 1)
        os.dup2(f.fileno(), 2)
        try:
            yield out
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
            f.seek(0)
            out["text"] = f.read().decode(errors="replace") + py.getvalue()


def _importable(model: nn.Module) -> None:
    """Strict ``torch.export`` needs the model's classes importable through ``sys.modules``."""
    for m in model.modules():
        mod = type(m).__module__
        if mod not in sys.modules:
            raise ConfigError(f"{type(m).__name__} (module {mod}) is not importable; strict torch.export "
                              "(needed for int8 residual adds in TFLite) cannot trace it")


def unsupported_op(err: Exception) -> str:
    """The op named in a converter error (``aten.xxx`` or a TFLite op), or the first line of the error."""
    text = str(err)
    m = re.search(r"(aten\.[A-Za-z0-9_]+(?:\.[A-Za-z0-9_]+)?)", text) or re.search(r"'(tfl\.[a-z_0-9]+)'", text) \
        or re.search(r"op[s]? (?:named |type )?'?([A-Za-z_][A-Za-z0-9_.]+)'? (?:is|are) not supported", text)
    first = text.strip().splitlines()[0] if text.strip() else type(err).__name__
    return m.group(1) if m else first[:200]


def _convert(model: nn.Module, x1: torch.Tensor, path: Path, quantizer=None) -> None:
    """litert-torch's conversion, its progress lines captured; a failure carries what it printed."""
    err = None
    with _quiet() as cap:
        try:
            import litert_torch

            kwargs = {}
            if quantizer is not None:
                from litert_torch.quantize.quant_config import QuantConfig

                kwargs["quant_config"] = QuantConfig(pt2e_quantizer=quantizer)
            litert_torch.convert(model, (x1,), **kwargs).export(str(path))
        except Exception as e:  # noqa: BLE001 - re-raised below with the converter's output
            err = e
    if err is not None:
        raise RuntimeError(f"{err}\n{cap.get('text', '')[-3000:]}") from err


def convert_fp32(model: nn.Module, example: torch.Tensor, path: str | Path, name: str | None = None,
                 batch: int = 1) -> Path:
    """``model`` as an fp32 ``.tflite`` at ``path`` (static shapes: ``batch`` inputs a call, 1 for every
    exporter); a ConfigError names the op the converter refused and the model (``name``, e.g. the zoo name, else its
    class)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    _importable(model)
    try:
        _convert(model, example[:batch].contiguous(), path)
    except ConfigError:
        raise
    except Exception as e:  # noqa: BLE001 - any converter failure is the user's model meeting TFLite
        raise ConfigError(f"{name or type(model).__name__} cannot be converted to TFLite: {unsupported_op(e)} "
                          f"({type(e).__name__}); use export=onnx for this model") from e
    return path


def check_convertible(model: nn.Module, example: torch.Tensor, name: str | None = None) -> None:
    """Convert the (untrained) model to fp32 TFLite in a scratch folder: a ConfigError names the op TFLite
    cannot convert before any training. A few seconds for the zoo's small nets."""
    with tempfile.TemporaryDirectory(prefix="edgebench-tflite-check-") as tmp:
        convert_fp32(model, example, Path(tmp) / "check.tflite", name)


def _where(node) -> str:
    """Where a graph node comes from in the model's source: its module and the last frame of its stack trace."""
    stack = node.meta.get("nn_module_stack") or {}
    module = ""
    if stack:
        path, cls = list(stack.values())[-1]
        if path:
            module = f" in {path} ({cls.rsplit('.', 1)[-1]})"
    frames = re.findall(r'File "([^"]+)", line (\d+), in \w+\n\s*(.+)', node.meta.get("stack_trace") or "")
    if frames:
        file, line, code = frames[-1]
        parts = Path(file).parts
        short = "/".join(parts[parts.index("edgebench"):]) if "edgebench" in parts else Path(file).name
        module += f" at {short}:{line} `{code.split('  #')[0].strip()}`"
    return module


def _failing_node(prepared, samples: list[torch.Tensor]) -> str | None:
    """Re-run calibration node by node: the op whose input the calibration cannot observe (e.g. an integer
    tensor: ``"histogram_cpu" not implemented for 'Long'``), with where it is in the model; None if none fails."""
    import torch.fx

    class Locate(torch.fx.Interpreter):
        found: str | None = None

        def run_node(self, n):
            try:
                return super().run_node(n)
            except Exception:
                if Locate.found is None:
                    observed = n.args[0] if n.op == "call_module" and n.args else None
                    value = self.env.get(observed) if isinstance(observed, torch.fx.Node) else None
                    users = [u for u in n.users if u.op == "call_function"]
                    op = users[0] if users and observed is not None else n
                    what = (f" on an {str(value.dtype).removeprefix('torch.')} "
                            f"{'constant' if observed.op == 'get_attr' else 'tensor'}"
                            if isinstance(value, torch.Tensor) else "")
                    Locate.found = f"{op.target}{what}{_where(op)}"
                raise

    try:
        with torch.no_grad():
            for s in samples[:1]:
                Locate(prepared).run(s.contiguous())
    except Exception:  # noqa: BLE001 - the failure itself is reported by the caller
        pass
    return Locate.found


def convert_int8(model: nn.Module, example: torch.Tensor, calibration: list[torch.Tensor], path: str | Path,
                 name: str | None = None, batch: int = 1) -> Path:
    """Full-integer int8 ``.tflite`` (per-channel symmetric weights, int8 activations and I/O) by PT2E; static
    shapes: ``batch`` inputs a call (1 for every exporter), calibrated on slices of that many.

    A ConfigError names the model (``name``, e.g. ``model=ram``, else its class), the op the conversion refused
    and, when calibration fails on an op, where that op is in the model's source."""
    with _quiet():
        from litert_torch.quantize.pt2e_quantizer import PT2EQuantizer, get_symmetric_quantization_config
        from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    _importable(model)
    x1 = example[:batch].contiguous()
    samples = [b[i:i + batch] for b in calibration for i in range(0, len(b) - batch + 1, batch)]
    samples = samples[:max(1, CALIBRATION_SAMPLES // batch)]
    if not samples:
        raise ValueError("int8 TFLite needs calibration samples (method.calibration_batches >= 1)")
    prepared = None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch.export's and the quantizer's notes: not the user's business
            quantizer = PT2EQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True))
            graph = torch.export.export(model, (x1,), strict=True).module()
            prepared = prepare_pt2e(graph, quantizer)
            with torch.no_grad():
                for s in samples:
                    prepared(s.contiguous())
            calibrated, prepared = prepared, None  # a later failure is the conversion's, not an op's in calibration
            quantized = convert_pt2e(calibrated, fold_quantize=False)
            _convert(quantized, x1, path, quantizer)
    except Exception as e:  # noqa: BLE001
        op = (_failing_node(prepared, samples) if prepared is not None else None) or unsupported_op(e)
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        why = f": {first}" if first not in op else ""
        raise ConfigError(f"{name or type(model).__name__} cannot be converted to int8 TFLite: {op} "
                          f"({type(e).__name__}{why}); use export=onnx_int8 for this model (or export=tflite, "
                          "fp32)") from e
    return path


CHECK_SAMPLES = 4  # random calibration samples of the pre-check: enough to run every observer once


def check_convertible_int8(model: nn.Module, example: torch.Tensor, name: str | None = None) -> None:
    """Convert the (untrained) model to full-integer int8 TFLite in a scratch folder, calibrated on a few random
    samples shaped like ``example``: a ConfigError names the op the int8 route cannot take, before any training.
    Measured on 2 CPU cores once litert-torch is imported: 1.3 s (LeNet-300-100), 2.7 s (LeNet-5), 3.2 s (Conv-2
    small, Conv-2), 8 s (ResNet-20); RAM is refused in 1.7 s (the fp32 check takes 1.5-5 s, RAM's 20 s)."""
    g = torch.Generator().manual_seed(0)
    calibration = [torch.randn((CHECK_SAMPLES, *example.shape[1:]), generator=g, dtype=example.dtype)]
    with tempfile.TemporaryDirectory(prefix="edgebench-tflite-check-") as tmp:
        convert_int8(model, example, calibration, Path(tmp) / "check.tflite", name)


# ----------------------------------------------------------------------------------- LiteRT (host)


class LiteRT:
    """A ``.tflite`` file in the LiteRT interpreter: ``logits = LiteRT(path)(x)`` for a batch of float inputs.

    Batch-1 static graphs: a batch runs one sample at a time. An int8 model's input is quantised
    with its scale and zero point and its output dequantised, so callers see floats either way.
    ``reference=True`` uses the reference kernels without delegates (what TFLite Micro computes),
    else the default (XNNPACK) kernels a phone or Raspberry Pi would use.
    """

    def __init__(self, path: str | Path, threads: int = 0, reference: bool = False):
        with _quiet():
            from ai_edge_litert.interpreter import Interpreter, OpResolverType

        kw = {"num_threads": threads or torch.get_num_threads()}
        if reference:
            kw["experimental_op_resolver_type"] = OpResolverType.BUILTIN_REF
        self.path, self._kw = path, kw
        with _quiet():
            self.interp = Interpreter(model_path=str(path), **kw)
            self.interp.allocate_tensors()
        self.inp = self.interp.get_input_details()[0]
        self.out = self.interp.get_output_details()[0]

    def run_one(self, x: np.ndarray) -> np.ndarray:
        """One raw invocation: ``x`` already in the input's dtype and shape."""
        self.interp.set_tensor(self.inp["index"], x)
        self.interp.invoke()
        return self.interp.get_tensor(self.out["index"])

    def quantize_input(self, x: torch.Tensor) -> np.ndarray:
        return quantize(x.detach().cpu().numpy().astype(np.float32), self.inp)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        outs = [dequantize(self.run_one(self.quantize_input(x[i:i + 1])), self.out) for i in range(len(x))]
        return torch.from_numpy(np.concatenate(outs, 0))

    def ops(self) -> list[str]:
        """The TFLite ops of the file (read with the reference kernels: XNNPACK would hide them in a DELEGATE)."""
        if "experimental_op_resolver_type" not in self._kw:
            return LiteRT(self.path, reference=True).ops()
        return sorted({d["op_name"] for d in self.interp._get_ops_details()})


def litert_predictor(artifact: Artifact, threads: int = 0) -> LiteRT:
    return LiteRT(artifact.path, threads=threads)


def litert_runner(path: str | Path, example_input: torch.Tensor, threads: int) -> Callable[[], object]:
    """One invocation of a ``.tflite`` file in LiteRT (default kernels, XNNPACK) on as many of ``example_input`` as
    the file's static batch holds (1 for every exporter's file), input quantised once."""
    lite = LiteRT(path, threads=threads)
    x = lite.quantize_input(example_input[:int(lite.inp["shape"][0])])

    def run():
        return lite.run_one(x)

    return run


def _litert_runner(artifact: Artifact, example: torch.Tensor, threads: int) -> Callable[[], object]:
    return litert_runner(artifact.path, example, threads)


def quantize(x: np.ndarray, detail: dict) -> np.ndarray:
    if detail["dtype"] == np.float32:
        return x.astype(np.float32)
    scale, zero = detail["quantization"]
    info = np.iinfo(detail["dtype"])
    return np.clip(np.round(x / scale) + zero, info.min, info.max).astype(detail["dtype"])


def dequantize(y: np.ndarray, detail: dict) -> np.ndarray:
    if detail["dtype"] == np.float32:
        return y.astype(np.float32)
    scale, zero = detail["quantization"]
    return ((y.astype(np.float32) - zero) * scale).astype(np.float32)


# ----------------------------------------------------------------------------------- TFLite Micro


def tflm_interpreter(path: str | Path, arena_size: int):
    from tflite_micro.python.tflite_micro import runtime

    return runtime.Interpreter.from_file(str(path), arena_size=arena_size)


# One TFLite Micro invocation with a given arena, in a child process: some too-small arenas crash TFLM's
# Python wrapper (a segmentation fault, seen with LeNet-300-100) instead of raising, so probing them in
# this process is not safe.
_PROBE = ("import sys, numpy as np\n"
          "from tflite_micro.python.tflite_micro import runtime\n"
          "it = runtime.Interpreter.from_file(sys.argv[1], arena_size=int(sys.argv[2]))\n"
          "it.set_input(np.load(sys.argv[3]), 0)\n"
          "it.invoke()\n")


def _runs(path: Path, arena: int, x: np.ndarray) -> bool:
    """Whether TFLite Micro runs ``path`` on ``x`` with an ``arena``-byte arena (in a child process, ~0.15 s)."""
    with tempfile.TemporaryDirectory(prefix="edgebench-tflm-") as tmp:
        xf = Path(tmp) / "x.npy"
        np.save(xf, x)
        r = subprocess.run([sys.executable, "-c", _PROBE, str(path), str(arena), str(xf)], capture_output=True,
                           timeout=300)
    return r.returncode == 0


def measure_arena(path: str | Path, example: np.ndarray, limit: int = 64 << 20) -> int:
    """The TFLite Micro tensor arena ``path`` needs, in bytes, on this (64-bit) host: the smallest
    ``arena_size`` (to TFLM's 16-byte alignment) with which it runs, found by bisection in child
    processes and started from TFLM's own allocation report (``print_allocations``), which can be a
    few hundred bytes short of what initialisation needs (LeNet-300-100: reported 6,496 B)."""
    path = Path(path)
    if not _runs(path, limit, example):
        raise CannotRun(f"{path.name} does not run in TFLite Micro even with a {limit:,} B arena")
    with _quiet() as cap:
        it = tflm_interpreter(path, limit)
        it.set_input(example, 0)
        it.invoke()
        it.print_allocations()
    m = re.search(r"Arena allocation total (\d+) bytes", cap.get("text", ""))
    reported = int(m.group(1)) if m else None
    lo, hi, step = 0, -(-(reported or limit) // ALIGN) * ALIGN, 256
    while not _runs(path, hi, example):  # up from the report until it runs
        lo, hi, step = hi, min(hi + step, limit), step * 2
    while hi - lo > ALIGN:  # then down to the smallest that runs
        mid = (lo + hi) // 2 // ALIGN * ALIGN
        lo, hi = (lo, mid) if _runs(path, mid, example) else (mid, hi)
    log.info("TFLite Micro arena of %s: %d B (bisection; TFLM's report %s B)", path.name, hi, reported)
    return hi


def tflm_predict(path: str | Path, arena: int, x: np.ndarray) -> np.ndarray:
    """One TFLite Micro invocation on ``x`` (already in the input's dtype); the raw output."""
    with _quiet():
        it = tflm_interpreter(path, arena)
        it.set_input(x, 0)
        it.invoke()
    return it.get_output(0)  # (only with an arena that runs: a too-small one may crash, see _PROBE)


def c_array(model_bytes: bytes, arena: int, out_dir: Path, name: str = "g_model") -> list[Path]:
    """``model_data.h`` / ``model_data.cc``: the flatbuffer as an aligned C array and the arena to declare."""
    h = out_dir / "model_data.h"
    cc = out_dir / "model_data.cc"
    h.write_text(
        "// Generated by edgebench: a TFLite Micro model and the tensor arena it needs.\n"
        "#ifndef EDGEBENCH_MODEL_DATA_H_\n#define EDGEBENCH_MODEL_DATA_H_\n\n"
        f"extern const unsigned char {name}[];\nextern const unsigned int {name}_len;\n\n"
        f"// Measured on a 64-bit host with TFLite Micro; a 32-bit MCU needs slightly less.\n"
        f"constexpr int kTensorArenaSize = {arena};\n\n#endif  // EDGEBENCH_MODEL_DATA_H_\n")
    rows = [", ".join(f"0x{b:02x}" for b in model_bytes[i:i + 12]) for i in range(0, len(model_bytes), 12)]
    cc.write_text(
        '#include "model_data.h"\n\n'
        f"alignas({ALIGN}) const unsigned char {name}[] = {{\n  " + ",\n  ".join(rows) + "\n};\n"
        f"const unsigned int {name}_len = {len(model_bytes)};\n")
    return [cc, h]


# ----------------------------------------------------------------------------------- exporters

# what each exporter shares: LiteRT runs the file on the host, timed beside the dense model's fp32 .tflite
LITERT = dict(runtime="litert", predictor=litert_predictor, runner=_litert_runner, baseline="tflite",
              packages=("ai-edge-litert", "numpy", "torch"))
INT8 = "+method=ptq_int8 (or qat_int8)"  # the step an int8 exporter's QuantSpec comes from


def _check_fp32(model: nn.Module, example: torch.Tensor, name: str | None = None) -> None:
    check_convertible(model, example, name)  # looked up when called: tests replace it


def _check_int8(model: nn.Module, example: torch.Tensor, name: str | None = None) -> None:
    # int8 takes the PT2E route with random calibration, which refuses ops the fp32 route takes
    check_convertible_int8(model, example, name)


@register("tflite", dtype="fp32", format="tflite", requires=lambda: require("tflite"), devices=("tflite",),
          precheck=_check_fp32, label="TFLite", **LITERT)
def tflite_fp32(model: nn.Module, example: torch.Tensor, spec: QuantSpec | None, out_dir: Path) -> Artifact:
    path = convert_fp32(model, example, out_dir / "model.tflite")
    return Artifact(path, [path], "tflite", "litert-torch", "fp32", "litert",
                    "fp32 TFLite flatbuffer (torch.export strict -> litert-torch), run by LiteRT on the host")


def _int8(model: nn.Module, example: torch.Tensor, spec: QuantSpec | None, out_dir: Path) -> Artifact:
    assert spec is not None  # the registry refuses an int8 exporter without a spec
    path = convert_int8(model, example, list(spec.calibration), out_dir / "model.tflite")
    n = min(CALIBRATION_SAMPLES, sum(len(b) for b in spec.calibration))
    return Artifact(path, [path], "tflite", "litert-torch PT2E", "int8", "litert",
                    f"full-integer int8 TFLite (per-channel symmetric weights, int8 activations and I/O; "
                    f"PT2E calibrated on {n} training images one at a time), run by LiteRT on the host")


@register("tflite_int8", dtype="int8", format="tflite", needs_spec=True, eager_equivalent=False,
          requires=lambda: require("tflite_int8"), devices=("tflite", "tflite_edgetpu", "x_cube_ai"), precheck=_check_int8,
          label="TFLite", after=INT8, **LITERT)
def tflite_int8(model: nn.Module, example: torch.Tensor, spec: QuantSpec | None, out_dir: Path) -> Artifact:
    return _int8(model, example, spec, out_dir)


@register("tflite_micro", dtype="int8", format="tflite_micro", needs_spec=True, eager_equivalent=False,
          requires=lambda: require("tflite_micro", micro=True), devices=("tflite_micro", "tflite", "tflite_edgetpu", "x_cube_ai"),
          precheck=_check_int8, label="TFLite Micro", after=INT8, **LITERT)
def tflite_micro(model: nn.Module, example: torch.Tensor, spec: QuantSpec | None, out_dir: Path) -> Artifact:
    return _for_micro(_int8(model, example, spec, out_dir), example, out_dir)


# after tflite_micro: a microcontroller's int8 file stays the int8 one; a float model (a dense reference, a pruned or
# low-rank net without int8) gets this float file instead of one no runtime of the device loads
@register("tflite_micro_fp32", dtype="fp32", format="tflite_micro", requires=lambda: require("tflite_micro_fp32", micro=True),
          devices=("tflite_micro",), precheck=_check_fp32, label="TFLite Micro", **LITERT)
def tflite_micro_fp32(model: nn.Module, example: torch.Tensor, spec: QuantSpec | None, out_dir: Path) -> Artifact:
    path = convert_fp32(model, example, out_dir / "model.tflite")
    art = Artifact(path, [path], "tflite", "litert-torch", "fp32", "litert",
                   "fp32 TFLite flatbuffer (torch.export strict -> litert-torch), run by LiteRT on the host")
    return _for_micro(art, example, out_dir)


def _for_micro(art: Artifact, example: torch.Tensor, out_dir: Path) -> Artifact:
    """A .tflite file made ready for TFLite Micro: its tensor arena measured by running it there, TFLite Micro's
    output checked against LiteRT's reference kernels on the example, and the C array written."""
    lite = LiteRT(art.path)
    x = lite.quantize_input(example[:1])
    arena = measure_arena(art.path, x)
    # spot check: TFLite Micro's kernels compute what LiteRT's reference kernels do on this input
    ref = LiteRT(art.path, reference=True).run_one(x)
    micro = tflm_predict(art.path, arena, x)
    if art.dtype == "int8":
        diff = int(np.abs(ref.astype(np.int32) - micro.astype(np.int32)).max())
        if diff > 1:
            log.warning("TFLite Micro output differs from LiteRT's reference kernels by %d LSB on the example", diff)
    elif not np.allclose(ref, micro, rtol=1e-3, atol=1e-4):
        log.warning("TFLite Micro output differs from LiteRT's reference kernels by %.3g on the example",
                    float(np.abs(ref - micro).max()))
    sources = c_array(art.path.read_bytes(), arena, out_dir)
    art.format, art.arena_bytes, art.extra_files = "tflite_micro", arena, sources
    art.note = (art.note.replace("run by LiteRT on the host", "")
                + f"for TFLite Micro: measured tensor arena {arena:,} B (64-bit host), C array in model_data.cc/.h")
    return art
