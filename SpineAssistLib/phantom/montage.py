"""Write montages of phantom studies (PNG) to look at: every Pfirrmann grade on one mid-sagittal
slice, every MSU size on axial disc slices, and a few random subjects.

    python -m SpineAssistLib.phantom.montage docs/images
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from SpineAssistLib.findings import MSUGrade
from SpineAssistLib.phantom.params import sample_params
from SpineAssistLib.phantom.study import PhantomStudy, generate_study

GRADES_SEED = 101
SIZES_SEED = 202
RANDOM_SEEDS = (1, 2, 3)


def _window(img: np.ndarray, study: PhantomStudy) -> np.ndarray:
    c, w = study.window
    return np.clip((img.astype(float) - (c - w / 2)) / w * 255, 0, 255).astype(np.uint8)


def _label(img, text: str):
    from PIL import ImageDraw

    draw = ImageDraw.Draw(img)
    draw.rectangle([0, 0, 8 * len(text) + 6, 14], fill=0)
    draw.text((3, 1), text, fill=255)
    return img


def _mid_sagittal(study: PhantomStudy) -> np.ndarray:
    g = study.sagittal
    k = int(np.argmin([abs(float((s.position - study.spine.vertebra("L3").center) @ s.normal)) for s in g.slices]))
    img = g.images[k]
    if g.slices[k].row_direction[1] < 0:            # show anterior on the left whatever the scanner did
        img = img[:, ::-1]
    return img


def _axial_of(study: PhantomStudy, level: str) -> np.ndarray:
    """Return the axial slice of ``level`` with the deepest herniation (else its middle slice)."""
    entries = [e for e in study.keypoints["axial"] if e["level"] == level]
    lv = study.truth.level(level)
    src = lv.ldh.geometry.source.get("sop_instance_uid") if lv.ldh.geometry else None
    for e in entries:
        if e["sop_instance_uid"] == src:
            return study.axial.images[e["slice_index"]]
    a, b = [blk for blk, s in zip(study.axial.blocks(), study.params.lumbar_levels) if s == level][0]
    return study.axial.images[(a + b) // 2]


def _crop_spine(img: np.ndarray, study: PhantomStudy, half_mm: float = 70.0) -> np.ndarray:
    """Return a square crop of an axial slice centred on its middle (the canal)."""
    ps = study.axial.slices[0].pixel_spacing[0]
    h = int(half_mm / ps)
    r, c = img.shape[0] // 2, img.shape[1] // 2
    return img[max(r - h, 0): r + h, max(c - h, 0): c + h]


def _to_pil(a: np.ndarray, size: int):
    from PIL import Image

    return Image.fromarray(a).resize((size, int(size * a.shape[0] / a.shape[1])), Image.BILINEAR)


def _row(images):
    from PIL import Image

    h = max(i.height for i in images)
    out = Image.new("L", (sum(i.width for i in images) + 4 * (len(images) - 1), h), 0)
    x = 0
    for i in images:
        out.paste(i, (x, 0))
        x += i.width + 4
    return out


def write_montages(out_dir: str | Path) -> list[Path]:
    """Write phantom_pfirrmann.png, phantom_msu.png and phantom_subjects.png; return the paths."""
    from PIL import Image

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    levels = ["L1-L2", "L2-L3", "L3-L4", "L4-L5", "L5-S1"]
    paths = []

    # every Pfirrmann grade on one spine: L1-L2 grade I ... L5-S1 grade V
    p = sample_params(GRADES_SEED, lumbar_count=5, pfirrmann=dict(zip(levels, (1, 2, 3, 4, 5))),
                      msu={lv: MSUGrade(0) for lv in levels}, slip_percent={lv: 0.0 for lv in levels},
                      snr=30.0, ghost_amplitude=0.0)
    st = generate_study(GRADES_SEED, p)
    sag = _to_pil(_window(_mid_sagittal(st), st), 512)
    _label(sag, "Pfirrmann I (L1-L2) .. V (L5-S1)")
    axs = [_label(_to_pil(_window(_crop_spine(_axial_of(st, lv), st), st), 256), f"{lv} grade {g}")
           for lv, g in zip(levels, ("I", "II", "III", "IV", "V"))]
    grid = Image.new("L", (512 + 4 + 256 * 2 + 4, max(512, 3 * 256 + 8)), 0)
    grid.paste(sag, (0, 0))
    for i, a in enumerate(axs[:5]):
        grid.paste(a, (516 + (i % 2) * 260, (i // 2) * 260))
    paths.append(out / "phantom_pfirrmann.png")
    grid.save(paths[-1], optimize=True)

    # every MSU size (0 bulge, 1, 2, 3) and zone on one spine, axial slice of maximal extrusion
    msu = {"L1-L2": MSUGrade(0, bulge=True), "L2-L3": MSUGrade(1, "A"), "L3-L4": MSUGrade(2, "AB", "right"),
           "L4-L5": MSUGrade(3, "A"), "L5-S1": MSUGrade(2, "BC", "left")}
    p = sample_params(SIZES_SEED, lumbar_count=5, msu=msu, pfirrmann={lv: 3 for lv in levels},
                      slip_percent={"L4-L5": 20.0, "L5-S1": 0.0}, snr=28.0, ghost_amplitude=0.0)
    st = generate_study(SIZES_SEED, p)
    sag = _label(_to_pil(_window(_mid_sagittal(st), st), 512), "MSU sizes; L4-L5 anterolisthesis 20 %")
    axs = [_label(_to_pil(_window(_crop_spine(_axial_of(st, lv), st), st), 256), f"{lv} MSU {m.label}")
           for lv, m in msu.items()]
    grid = Image.new("L", (512 + 4 + 256 * 2 + 4, max(512, 3 * 256 + 8)), 0)
    grid.paste(sag, (0, 0))
    for i, a in enumerate(axs):
        grid.paste(a, (516 + (i % 2) * 260, (i // 2) * 260))
    paths.append(out / "phantom_msu.png")
    grid.save(paths[-1], optimize=True)

    # random subjects as drawn (mid-sagittal + the L4-L5 axial)
    rows = []
    for seed in RANDOM_SEEDS:
        st = generate_study(seed)
        lv = st.params.lumbar_levels[-2]
        desc = ", ".join(f"{x.name} P{x.pfirrmann.value.grade}" for x in st.truth.levels[-2:])
        rows.append(_row([_label(_to_pil(_window(_mid_sagittal(st), st), 384), f"seed {seed}: {desc}"),
                          _label(_to_pil(_window(_axial_of(st, lv), st), 384), f"{lv} {st.truth.level(lv).ldh.value.label}")]))
    grid = Image.new("L", (rows[0].width * len(rows) + 8, rows[0].height), 0)
    x = 0
    for r in rows:
        grid.paste(r, (x, 0))
        x += r.width + 4
    paths.append(out / "phantom_subjects.png")
    grid.save(paths[-1], optimize=True)
    return paths


if __name__ == "__main__":  # pragma: no cover
    for path in write_montages(sys.argv[1] if len(sys.argv) > 1 else "docs/images"):
        print(path)
