"""Where the bundled networks run: ONNX Runtime on a CPU, torch on a GPU.

On a CPU each model's network runs in ONNX Runtime. It uses an ONNX copy of the shipped ``.pt``
file, exported once on this machine into the cache. ``spineassist prepare`` makes the copies, and
``make setup`` runs it; otherwise the first use makes them. Each copy is keyed by the ``.pt`` file's
SHA-256 and checked against its own SHA-256 before use.

A CPU process built this way never imports torch or ultralytics, which take seconds to import. The
networks also run faster than in torch (``benchmarks/RESULTS.md``, "Models"). On a GPU (CUDA, MPS), or where
onnxruntime is not installed, torch runs the networks from the ``.pt`` file as before.

``SPINEASSIST_CPU_RUNTIME=torch`` makes the CPU use torch too; the tests use it to compare the two.

Both runtimes hand the same numpy arrays to the pre- and post-processing in ``yolo`` and ``unet``:
- YOLO detect and pose: ``[predictions (B, 4 + classes + extra, anchors)]``;
- YOLO segment: the same, followed by the mask prototypes ``(B, 32, H/4, W/4)``;
- YOLO classify: ``[probabilities (B, classes)]``;
- U-Net: ``[logits (B, 2, H, W)]``;
- disc gradings (``disc_grades``): ``[Modic type probabilities (B, 4), binary probabilities (B, 5)]``.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import logging
import os
import time
import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np

from SpineAssistLib.errors import ModelError
from SpineAssistLib.export.atomic import atomic_path
from SpineAssistLib.models.disc_grades_net import CHANNELS, INPUT_SIZE, load_network
from SpineAssistLib.models.networks import (
    load_unet_network,
    load_yolo_network,
    yolo_outputs,
)
from SpineAssistLib.models.registry import ModelSpec, sha256_file
from SpineAssistLib.resources import cache_root

log = logging.getLogger(__name__)

ONNX_OPSET = 17
RUNTIME_ENV = "SPINEASSIST_CPU_RUNTIME"
EXPORT_CHECK_ATOL = 1e-3   # an exported network must answer as torch does, to float rounding
_ANNOUNCED = False


def onnx_dir() -> Path:
    """Return the folder of the ONNX copies (``SPINEASSIST_ONNX_DIR`` overrides it)."""
    return Path(os.environ.get("SPINEASSIST_ONNX_DIR") or cache_root() / "onnx")


THREADS_ENV = "SPINEASSIST_THREADS"


def cpu_threads() -> int | None:
    """Return the CPU threads one model may use (``SPINEASSIST_THREADS``), or None for the runtime's
    own choice (every core). Batch workers set it so that several share the cores instead of each
    taking them all."""
    value = os.environ.get(THREADS_ENV, "").strip()
    if not value:
        return None
    try:
        threads = int(value)
    except ValueError:
        threads = 0
    if threads < 1:
        raise ModelError(f"{THREADS_ENV} must be a whole number of threads (1 or more); got {value!r}")
    return threads


def onnx_runtime_installed() -> bool:
    return importlib.util.find_spec("onnxruntime") is not None


def cpu_runtime() -> str:
    """Return the runtime used on a CPU: ``onnx`` (when onnxruntime is installed) or ``torch``."""
    wanted = os.environ.get(RUNTIME_ENV, "auto").strip().lower()
    if wanted not in ("auto", "onnx", "torch"):
        raise ModelError(f"{RUNTIME_ENV} must be auto, onnx or torch; got {wanted!r}")
    if wanted == "torch":
        return "torch"
    if not onnx_runtime_installed():
        if wanted == "onnx":
            raise ModelError(f"{RUNTIME_ENV}=onnx, but onnxruntime is not installed; run `make setup` "
                             f"(or pip install onnxruntime)")
        return "torch"
    return "onnx"


def onnx_path(spec: ModelSpec) -> Path:
    return onnx_dir() / f"{spec.name}-{spec.sha256[:16]}.onnx"


def _intact(path: Path, spec: ModelSpec) -> bool | None:
    """Return whether the copy at ``path`` is of ``spec``'s weights and unaltered (its record's
    SHA-256s), or None where the copy or its record is missing or unreadable."""
    record = path.with_suffix(".json")
    if not path.is_file() or not record.is_file():
        return None
    try:
        meta = json.loads(record.read_text())
    except (OSError, ValueError):
        return None
    return meta.get("source_sha256") == spec.sha256 and meta.get("onnx_sha256") == sha256_file(path)


def _write_record(path: Path, spec: ModelSpec, **facts: Any) -> None:
    """Write the record ``_intact`` checks beside the copy at ``path``, with ``facts`` (how it was made)."""
    path.with_suffix(".json").write_text(json.dumps(
        {"model": spec.name, "source_sha256": spec.sha256, "onnx_sha256": sha256_file(path), **facts}, indent=1) + "\n")


def cached_onnx(spec: ModelSpec) -> Path | None:
    """Return the ONNX copy of ``spec``'s weights when it is there and intact, else None."""
    path = onnx_path(spec)
    intact = _intact(path, spec)
    if intact is False:
        log.warning("the ONNX copy %s does not match its record; it is made again", path.name)
    return path if intact else None


def ensure_onnx(spec: ModelSpec, weights: Path) -> Path:
    """Return the intact ONNX copy of ``spec``'s verified weights, exporting it first if needed."""
    path = cached_onnx(spec)
    if path is not None:
        return path
    global _ANNOUNCED
    if not _ANNOUNCED:     # once per process: the first run on a machine makes all seven
        log.warning("making the models' ONNX copies for the CPU (once per machine, about 15 s in all; "
                    "`spineassist prepare` makes them ahead)")
        _ANNOUNCED = True
    log.info("%s: making its ONNX copy", spec.name)
    return export_onnx(spec, weights)


@functools.lru_cache(maxsize=1)
def _cpu_key() -> str:
    """Return a short key of this CPU (model and instruction sets) and the ONNX Runtime version."""
    import hashlib
    import platform

    import onnxruntime

    cpu = platform.processor() or platform.machine()
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        cpu = next((ln for ln in lines if ln.startswith("model name")), cpu) + next(
            (ln for ln in lines if ln.startswith("flags")), "")
    except OSError:
        pass
    return hashlib.sha256(f"{onnxruntime.__version__}|{cpu}".encode()).hexdigest()[:10]


def optimized_onnx(spec: ModelSpec, weights: Path) -> Path:
    """Return ``spec``'s ONNX copy as ONNX Runtime optimises it for this CPU (made once from the
    plain copy and checked against its recorded SHA-256 when used): a session opens from it much
    faster, with the same answers and speed.
    It is keyed by the CPU and the ONNX Runtime version, because its fused kernels and memory
    layouts are chosen for them."""
    plain_path = onnx_path(spec)
    path = plain_path.with_name(f"{plain_path.stem}.opt-{_cpu_key()}.onnx")
    if _intact(path, spec):
        return path        # the plain copy is not read (nor hashed) when this one is intact
    plain = ensure_onnx(spec, weights)
    import onnxruntime as ort

    with atomic_path(path) as tmp:
        options = ort.SessionOptions()
        options.log_severity_level = 3
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.optimized_model_filepath = str(tmp)
        ort.InferenceSession(str(plain), options, providers=["CPUExecutionProvider"])
    _write_record(path, spec, **{"from": plain.name, "onnxruntime": ort.__version__})
    return path


def stale_copies(specs: list[ModelSpec]) -> list[Path]:
    """Return the files in the ONNX folder of the models in ``specs`` that belong to other weights
    (earlier or candidate ``.pt`` files) or to another CPU or ONNX Runtime version."""
    folder = onnx_dir()
    if not folder.is_dir():
        return []
    keep_opt = f".opt-{_cpu_key()}."
    out = []
    for spec in specs:
        current = onnx_path(spec).stem            # name-<sha16>
        for f in folder.glob(f"{spec.name}-*"):
            if f.suffix not in (".onnx", ".json"):
                continue
            stem = f.name.split(".", 1)[0]
            rest = f.name[len(stem):]              # ".onnx", ".json" or ".opt-<key>.onnx/json"
            if stem != current or (rest.startswith(".opt-") and not rest.startswith(keep_opt)):
                out.append(f)
    return sorted(out)


def prepare(specs: list[ModelSpec], weights: Callable[[ModelSpec], Path],
            report: Callable[[str], None] = print, prune: bool = False) -> list[tuple[str, Path, float]]:
    """Make the ONNX copy of every model that lacks one; return (name, path, seconds) per model.
    ``prune``: first delete the copies ``stale_copies`` lists."""
    if prune:
        stale = stale_copies(specs)
        for f in stale:
            f.unlink(missing_ok=True)
        report(f"removed {len(stale)} stale file(s) ({sum(1 for f in stale if f.suffix == '.onnx')} ONNX copies)")
    out = []
    for spec in specs:
        t = time.perf_counter()
        existing = cached_onnx(spec)
        source = weights(spec)
        path = existing or export_onnx(spec, source)
        optimized_onnx(spec, source)
        seconds = time.perf_counter() - t
        report(f"{spec.name}: {'already made' if existing else f'made in {seconds:.1f} s'} ({path})")
        out.append((spec.name, path, seconds))
    return out


# ---- torch ----------------------------------------------------------------------------------

def _export_module(spec: ModelSpec, weights: Path) -> tuple[Any, tuple[int, ...], dict[str, dict[int, str]]]:
    """Return (module whose outputs are the arrays above, example input shape, dynamic axes)."""
    import torch

    if spec.task == "unet-segment":
        return load_unet_network(weights, spec.name), (1, 1, 256, 256), {"images": {0: "batch", 2: "height", 3: "width"}}
    if spec.task == "disc-grades":
        return load_network(weights), (2, CHANNELS, INPUT_SIZE, INPUT_SIZE), {"images": {0: "batch"}}
    net = load_yolo_network(weights, spec.task)
    for m in net.modules():
        if hasattr(m, "dynamic"):   # detection heads: anchors from each input's size, not the example's
            m.dynamic = True
    task = spec.task

    class Outputs(torch.nn.Module):
        def __init__(self, inner: Any):
            super().__init__()
            self.inner = inner

        def forward(self, x: Any) -> tuple[Any, ...]:
            return tuple(yolo_outputs(self.inner(x), task))

    size = spec.input_size
    axes = {"images": {0: "batch"}} if task == "classify" else {"images": {0: "batch", 2: "height", 3: "width"}}
    return Outputs(net).eval(), (1, 3, size, size), axes


def export_onnx(spec: ModelSpec, weights: Path) -> Path:
    """Export ``spec``'s network to its ONNX copy (atomically), check it answers as torch does, record it."""
    try:
        import onnx  # noqa: F401 - torch's exporter needs it
        import torch
    except ImportError as e:
        raise ModelError(f"making the ONNX copies of the models needs torch and the onnx package ({e}); run "
                         f"`make setup` (or pip install -r Resources/requirements.txt)") from None
    module, shape, axes = _export_module(spec, weights)
    path = onnx_path(spec)
    path.parent.mkdir(parents=True, exist_ok=True)
    example = torch.rand(*shape, generator=torch.Generator().manual_seed(0))

    def outputs(x: Any) -> tuple[Any, ...]:
        y = module(x)
        return tuple(y) if isinstance(y, (tuple, list)) else (y,)

    with torch.no_grad():
        n_out = len(outputs(example))
    names = [f"output{i}" for i in range(n_out)]
    dynamic = dict(axes) | {n: {0: "batch"} for n in names}
    with atomic_path(path) as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (example,), str(tmp), dynamo=False, opset_version=ONNX_OPSET,
                          input_names=["images"], output_names=names, dynamic_axes=dynamic)
        # the copy must answer as torch on an input of another size than the example's (the disc
        # gradings' window has one size: another batch size)
        check_shape = shape if spec.task == "classify" else (3, *shape[1:]) if spec.task == "disc-grades" else \
            (2, shape[1], shape[2], shape[3] - 64)
        x = torch.rand(*check_shape, generator=torch.Generator().manual_seed(1))
        with torch.no_grad():
            expected = [t.numpy() for t in outputs(x)]
        got = OnnxNetwork(Path(tmp))(x.numpy())
        for e, g in zip(expected, got):
            if e.shape != g.shape or not np.allclose(e, g, atol=EXPORT_CHECK_ATOL, rtol=1e-3):
                raise ModelError(f"{spec.name}: the ONNX copy does not answer as the torch network does "
                                 f"(largest difference {np.abs(e - g).max() if e.shape == g.shape else 'in shape'}); "
                                 f"set SPINEASSIST_CPU_RUNTIME=torch and report it")
    _write_record(path, spec, opset=ONNX_OPSET, torch=torch.__version__)
    return path


# ---- ONNX Runtime ---------------------------------------------------------------------------

class OnnxNetwork:
    """An ONNX Runtime session on the CPU: ``net(x)`` -> the list of output arrays."""

    @classmethod
    def for_model(cls, spec: ModelSpec | None, weights: Path, device: str) -> "OnnxNetwork | None":
        """Return the session of ``spec``'s network (its copy optimised for this CPU) where ONNX
        Runtime runs it (``device`` cpu and ``cpu_runtime()`` onnx), else None: torch runs it. Also
        None, with a warning saying why, where no ONNX copy can be made or opened."""
        if spec is None or device != "cpu" or cpu_runtime() != "onnx":
            return None
        try:
            return cls(optimized_onnx(spec, weights), optimized=True)
        except ModelError as e:
            log.warning("%s: %s; the network runs in torch instead (slower on a CPU)", spec.name, e)
            return None

    def __init__(self, path: Path, optimized: bool = False):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.log_severity_level = 3
        # worker threads wait without spinning between operators: spinning took the CPU the writer
        # processes need
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        threads = cpu_threads()
        if threads:         # a batch worker shares the CPU with the others: its share, not every core
            options.intra_op_num_threads = threads
        if optimized:      # ``optimized_onnx``: optimised once already
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        try:
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as e:  # noqa: BLE001 - onnxruntime raises its own error types
            raise ModelError(f"ONNX Runtime cannot load {path}: {e}. Delete the file (it is made again) or set "
                             f"SPINEASSIST_CPU_RUNTIME=torch") from None
        self.input = self.session.get_inputs()[0].name
        self.path = path

    def __call__(self, x: np.ndarray) -> list[np.ndarray]:
        return self.session.run(None, {self.input: np.ascontiguousarray(x, dtype=np.float32)})
