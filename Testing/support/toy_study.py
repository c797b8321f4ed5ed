"""A toy study for the dataset, training and geometry tests: rectangles for L4, L5, S1 and two discs,
with their corners, a 2-slice axial block and its MSU keypoints (every number checkable by hand)."""

from __future__ import annotations

import numpy as np

from SpineAssistLib.anatomy import DISC_LABELS, VERTEBRA_LABELS, corner_name


def toy_study(seed: int = 1) -> dict:
    """A 3-slice sagittal and 2-slice axial study of rectangles: L4, L5, S1 bodies and two discs."""
    S, H, W = 3, 96, 80
    sag = np.full((S, H, W), 300, np.uint16)
    lab = np.zeros((S, H, W), np.uint8)
    bodies = {"L4": (10, 30), "L5": (40, 60), "S1": (70, 95)}
    for name, (r0, r1) in bodies.items():
        lab[:, r0:r1, 20:50] = VERTEBRA_LABELS[name]
        sag[:, r0:r1, 20:50] = 900
    lab[:, 31:39, 20:50] = DISC_LABELS["L4-L5"]
    lab[:, 61:69, 20:50] = DISC_LABELS["L5-S1"]
    sag[:, 31:39, 22:48] = 1800
    A = np.eye(4)   # (slice, row, col) -> LPS: slices along x (2 mm), rows down (-z), columns posterior (+y)
    A[:3, 0] = (2.0, 0, 0)
    A[:3, 1] = (0, 0, -1.0)
    A[:3, 2] = (0, 1.0, 0)
    corners = {}
    for name, (r0, r1) in bodies.items():
        for c, (r, col) in {"anterior-superior": (r0 + 1, 21), "posterior-superior": (r0 + 1, 48),
                            "anterior-inferior": (r1 - 2, 21), "posterior-inferior": (r1 - 2, 48)}.items():
            if name == "S1" and c.endswith("inferior"):
                continue
            corners[corner_name(name, c)] = [2.0, float(col), -float(r)]
    ax = np.full((2, 64, 64), 200, np.uint16)
    axl = np.zeros((2, 64, 64), np.uint8)
    axl[:, 20:36, 16:48] = DISC_LABELS["L4-L5"]
    axl[:, 36:40, 26:34] = 150
    axl[:, 42:52, 24:40] = 100
    ax[axl > 0] = 1500
    aff = np.eye(4)     # (row, col, 0) -> LPS: rows posterior (+y), columns patient left (+x)
    aff[:3, 0] = (0, 1.0, 0)
    aff[:3, 1] = (1.0, 0, 0)
    kp = {"left medial facet": [44.0, 44.0, 0.0], "right medial facet": [20.0, 44.0, 0.0],
          "posterior disc margin": [32.0, 35.0, 0.0], "herniation apex": [30.0, 39.0, 0.0],
          "posterior canal": [32.0, 51.0, 0.0]}
    return {"seed": seed, "sag_images": sag, "sag_labels": lab, "sag_affine": A, "sag_mid": 1,
            "ax_images": ax, "ax_labels": axl, "ax_affines": np.stack([aff, aff]), "ax_levels": ["L4-L5"] * 2,
            "corners": corners, "axial_keypoints": [{"slice_index": 0, "level": "L4-L5", "keypoints": kp}],
            "truth": None, "params": {"pfirrmann": {"L4-L5": 2, "L5-S1": 4}}}
