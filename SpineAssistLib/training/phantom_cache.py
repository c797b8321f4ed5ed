"""Return phantom studies as plain arrays (images, label maps, affines, keypoints, truth), rendered
once and cached as ``.npz`` + ``.json`` so that dataset builders and evaluation need not re-render.

The cache holds exactly what training and evaluation read; a cached study is a dict::

    {"seed", "sag_images" (S, R, C) uint16, "sag_labels" uint8, "sag_affine" 4x4 (slice, row, col) -> LPS,
     "sag_mid" (mid-sagittal slice index), "ax_images" (N, R, C), "ax_labels",
     "ax_affines" (N, 4, 4) per slice (row, col, 0) -> LPS, "ax_levels" [level per slice],
     "corners" {name: [x, y, z] LPS mm}, "axial_keypoints" [{slice_index, level, keypoints}],
     "truth" (findings.json dict), "params" (dict)}

Usage::

    from SpineAssistLib.training.phantom_cache import load_phantom
    s = load_phantom(1000, cache_dir="/tmp/spineassist-phantoms")     # ~20 s first time, then ~0.1 s
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

import numpy as np

# Acquisition shifted away from the training generator: the "external" test set.
EXTERNAL_OVERRIDES: dict[str, Any] = {
    "sag_matrix": 320, "sag_fov_mm": 340.0, "sag_acq_fraction": 0.7, "sag_obliquity_deg": (5.0, -4.0),
    "sag_anterior_left": False, "ax_matrix": 256, "ax_fov_mm": 230.0, "ax_acq_fraction": 0.8,
    "snr": 11.0, "bias_strength": 0.85, "bias_length_mm": 100.0,
    "tissue_signal": {"fat": 0.62, "marrow": 0.68, "muscle": 0.30},
}


_RENDER_VERSION: str | None = None


def render_version() -> str:
    """Return a digest (8 hex) of the code that renders a phantom: the ``phantom`` package and this
    module. It is part of every cache key, so that a render made by older phantom code is never
    read as if the current code had made it (an evaluation on stale renders does not reproduce)."""
    global _RENDER_VERSION
    if _RENDER_VERSION is None:
        import hashlib

        h = hashlib.sha256()
        here = Path(__file__).resolve()
        for f in sorted((here.parents[1] / "phantom").glob("*.py")) + [here]:
            h.update(f.name.encode() + b"\0" + f.read_bytes())
        _RENDER_VERSION = h.hexdigest()[:8]
    return _RENDER_VERSION


def _key(seed: int, overrides: Mapping[str, Any] | None) -> str:
    base = f"phantom-{seed:06d}-r{render_version()}"
    if not overrides:
        return base
    import hashlib

    h = hashlib.sha256(json.dumps(overrides, sort_keys=True, default=list).encode()).hexdigest()[:8]
    return f"{base}-{h}"


def render_phantom(seed: int, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Return the phantom study of ``seed`` (with ``sample_params`` overrides) as plain arrays."""
    from SpineAssistLib.phantom import generate_study, sample_params

    params = sample_params(seed, **dict(overrides or {}))
    st = generate_study(seed, params)
    ax = st.axial
    levels = [g.level for g in ax.slices]
    return {
        "seed": int(seed),
        "sag_images": st.sagittal.images, "sag_labels": st.sagittal.labels, "sag_affine": st.sagittal.affine(),
        "sag_mid": int(st.keypoints["sagittal"]["mid_sagittal_instance_number"]) - 1,
        "ax_images": ax.images, "ax_labels": ax.labels,
        "ax_affines": np.stack([g.index_to_lps() for g in ax.slices]), "ax_levels": levels,
        "corners": st.keypoints["sagittal"]["points"],
        "axial_keypoints": [{"slice_index": a["slice_index"], "level": a["level"], "keypoints": a["keypoints"]}
                            for a in st.keypoints["axial"]],
        "truth": st.truth.to_dict(), "params": st.params.to_dict(),
    }


def render_training_phantom(seed: int, overrides: Mapping[str, Any] | None = None, sag_slices: int = 5,
                            ax_blocks: int = 2, extra_block: bool = True) -> dict[str, Any]:
    """Return a partial phantom study for training, in the same form as ``render_phantom``.

    Renders only the ``sag_slices`` sagittal slices about the mid-sagittal one and the axial blocks
    of the ``ax_blocks`` lowest lumbar discs plus one other drawn from the seed (where herniations
    are), about a third of a whole study's time. The same phantom modules do the work
    (``build_spine``, ``Scanner.acquire``, ``sagittal_corners``, ``axial_keypoints``); no truth
    Assessment is built (grades come from the params).
    """
    from SpineAssistLib.phantom import sample_params
    from SpineAssistLib.phantom.acquisition import Scanner, Series, axial_planes, sagittal_planes
    from SpineAssistLib.phantom.spine import build_spine
    from SpineAssistLib.phantom.tissues import TissueModel
    from SpineAssistLib.phantom.truth import axial_keypoints, sagittal_corners

    params = sample_params(seed, **dict(overrides or {}))
    spine = build_spine(params)
    model = TissueModel(spine)
    scanner = Scanner(spine, model)
    planes = sagittal_planes(spine)
    mid = int(np.argmin([abs(float((g.position - spine.vertebra("L3").center) @ g.normal)) for g in planes]))
    lo = max(0, mid - sag_slices // 2)
    chosen = planes[lo:lo + sag_slices]
    imgs, labs = zip(*(scanner.acquire(g, params.sag_acq_fraction, params.sag_phase_fraction, params.ghost_amplitude)
                       for g in chosen))
    step = params.sag_thickness_mm + params.sag_gap_mm
    sag = Series("SAG", "", np.clip(np.rint(np.stack(imgs)), 0, 4095).astype(np.uint16), np.stack(labs), list(chosen), step)
    levels = list(params.lumbar_levels)
    rng = np.random.default_rng([int(seed), 0x7A1])
    keep = set(levels[-ax_blocks:])
    others = [lv for lv in levels if lv not in keep]
    if others and rng.random() < EXTRA_BLOCK_PROBABILITY and extra_block:
        keep.add(str(rng.choice(others)))
    if ax_blocks == 0:
        keep = set()
    ax_all = [g for g in axial_planes(spine) if g.level in keep]
    ax_imgs, ax_labs, ax_kp = [], [], []
    for i, g in enumerate(ax_all):
        img, lab = scanner.acquire(g, params.ax_acq_fraction, params.ax_phase_fraction, params.ghost_amplitude * 0.5)
        ax_imgs.append(img)
        ax_labs.append(lab)
        d = spine.disc(g.level)
        pts = axial_keypoints(model, d, float((g.position - d.center) @ d.normal))
        if pts is not None and (lab == d.label).any():
            ax_kp.append({"slice_index": i, "level": g.level, "keypoints": pts})
    corners = sagittal_corners(spine)
    return {
        "seed": int(seed), "sag_images": sag.images, "sag_labels": sag.labels, "sag_affine": sag.affine(),
        "sag_mid": mid - lo,
        "ax_images": np.clip(np.rint(np.array(ax_imgs, np.float32).reshape(-1, *sag.images.shape[1:] if not ax_imgs else ax_imgs[0].shape)), 0, 4095).astype(np.uint16),
        "ax_labels": np.array(ax_labs, np.uint8).reshape(-1, *(ax_labs[0].shape if ax_labs else sag.labels.shape[1:])),
        "ax_affines": np.array([g.index_to_lps() for g in ax_all]).reshape(-1, 4, 4),
        "ax_levels": [g.level for g in ax_all], "corners": corners, "axial_keypoints": ax_kp,
        "truth": None, "params": params.to_dict(),
    }


EXTRA_BLOCK_PROBABILITY = 0.35   # an upper-level axial block now and then: their discs look different


_ARRAYS = ("sag_images", "sag_labels", "sag_affine", "ax_images", "ax_labels", "ax_affines")


def load_phantom(seed: int, overrides: Mapping[str, Any] | None = None,
                 cache_dir: str | Path | None = None, partial: bool = False, sagittal_only: bool = False
                 ) -> dict[str, Any]:
    """Return the cached arrays of one phantom study, rendering and caching it on first use.

    ``partial``: the cheaper training render (``render_training_phantom``) instead of the whole
    study; ``sagittal_only``: a training render without axial slices (a few seconds).
    """
    if sagittal_only:
        def render(seed, overrides):
            return render_training_phantom(seed, overrides, ax_blocks=0)
        suffix = "-sag"
    elif partial:
        render, suffix = render_training_phantom, "-train"
    else:
        render, suffix = render_phantom, ""
    if cache_dir is None:
        return render(seed, overrides)
    # a partial render is cached under its own name even where the whole study is cached: a training
    # set must not depend on which renders happen to be in the cache
    base = Path(cache_dir) / (_key(seed, overrides) + suffix)
    npz, meta = base.with_suffix(".npz"), base.with_suffix(".json")
    if npz.is_file() and meta.is_file():
        d = json.loads(meta.read_text(encoding="utf-8"))
        with np.load(npz) as z:
            d.update({k: z[k] for k in _ARRAYS})
        return d
    d = render(seed, overrides)
    base.parent.mkdir(parents=True, exist_ok=True)
    tmp = base.with_name(base.name + ".partial.npz")
    np.savez_compressed(tmp, **{k: d[k] for k in _ARRAYS})
    meta.with_suffix(".json.tmp").write_text(
        json.dumps({k: v for k, v in d.items() if k not in _ARRAYS}, default=_jsonable), encoding="utf-8")
    tmp.replace(npz)
    meta.with_suffix(".json.tmp").replace(meta)
    return d


def _jsonable(o: Any) -> Any:
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, (np.ndarray, tuple)):
        return list(o)
    raise TypeError(f"cannot store {type(o).__name__} in the phantom cache")


def main(argv: list[str] | None = None) -> int:
    """Render phantoms into a cache: ``python -m SpineAssistLib.training.phantom_cache DIR FIRST COUNT [--external]``."""
    import argparse
    import time

    ap = argparse.ArgumentParser()
    ap.add_argument("cache_dir")
    ap.add_argument("first", type=int)
    ap.add_argument("count", type=int)
    ap.add_argument("--external", action="store_true")
    ap.add_argument("--partial", action="store_true", help="the cheaper training render")
    ap.add_argument("--sagittal-only", action="store_true", help="training render without axial slices")
    a = ap.parse_args(argv)
    for s in range(a.first, a.first + a.count):
        t = time.perf_counter()
        load_phantom(s, EXTERNAL_OVERRIDES if a.external else None, a.cache_dir, partial=a.partial,
                     sagittal_only=a.sagittal_only)
        print(f"seed {s}: {time.perf_counter() - t:.1f} s", flush=True)
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
