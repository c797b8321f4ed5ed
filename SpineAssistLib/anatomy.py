"""Names and label values shared by the phantom, the models, grading and the exports.

Label maps (phantom ground truth, model training sets, segmentation exports) use these values.
Keypoint names are the ones GRADING.md's rules take. Coordinates in files are patient LPS mm;
Slicer nodes are RAS (``geometry.lps_to_ras`` flips x and y).
"""

from __future__ import annotations

from typing import Sequence

from SpineAssistLib.findings import LEVEL_NAMES

# Vertebrae SpineAssist may name, cranial to caudal; L6 only with six lumbar vertebrae.
VERTEBRAE: tuple[str, ...] = ("T11", "T12", "L1", "L2", "L3", "L4", "L5", "L6", "S1")

# Label map values (documented in docs/labels.md and in every phantom's truth folder).
BACKGROUND = 0
VERTEBRA_LABELS: dict[str, int] = {"T11": 11, "T12": 12, "L1": 21, "L2": 22, "L3": 23, "L4": 24, "L5": 25, "L6": 26, "S1": 31}
POSTERIOR_ELEMENTS_LABEL = 40   # pedicles, laminae, facets, spinous processes (all levels)
THECAL_SAC_LABEL = 100          # CSF-filled dural sac (canal)
NEURAL_LABEL = 101              # conus medullaris and cauda equina inside the sac
HERNIATION_LABEL = 150          # disc material beyond the vertebral body margin (herniation or bulge)
DISC_LABELS: dict[str, int] = {name: 201 + i for i, name in enumerate(LEVEL_NAMES)}
UNNAMED_DISC_LABEL = 200        # a disc above T11-T12 in a real scan's mask: a disc, with no level name

CORNERS: tuple[str, ...] = ("anterior-superior", "posterior-superior", "anterior-inferior", "posterior-inferior")

# The MSU keypoints on an axial disc slice (GRADING.md).
MSU_KEYPOINTS: tuple[str, ...] = (
    "left medial facet", "right medial facet", "posterior disc margin", "herniation apex", "posterior canal",
)


def corner_name(vertebra: str, corner: str) -> str:
    """Return a vertebral-body corner's keypoint name, e.g. ``"L4 posterior-superior"``."""
    if vertebra not in VERTEBRAE:
        raise ValueError(f"vertebra must be one of {', '.join(VERTEBRAE)}; got {vertebra!r}")
    if corner not in CORNERS:
        raise ValueError(f"corner must be one of {', '.join(CORNERS)}; got {corner!r}")
    return f"{vertebra} {corner}"


def disc_space_corners(level: str) -> tuple[str, str, str, str]:
    """Return the four corner keypoint names bounding disc ``level``: the upper body's anterior- and
    posterior-inferior, then the lower body's anterior- and posterior-superior corners."""
    parts = level.split("-")
    if len(parts) != 2:
        raise ValueError(f"a disc level is named UPPER-LOWER (e.g. L4-L5); got {level!r}")
    upper, lower = parts
    return (corner_name(upper, "anterior-inferior"), corner_name(upper, "posterior-inferior"),
            corner_name(lower, "anterior-superior"), corner_name(lower, "posterior-superior"))


def level_name(upper: str, lower: str) -> str:
    """Return the disc level between two vertebrae, e.g. ``level_name("L5", "S1") == "L5-S1"``."""
    name = f"{upper}-{lower}"
    if name not in LEVEL_NAMES:
        raise ValueError(f"{upper} and {lower} do not bound a disc SpineAssist names; levels are {', '.join(LEVEL_NAMES)}")
    return name


def lumbar_vertebrae(count: int = 5) -> tuple[str, ...]:
    """Return the lumbar vertebrae for 4, 5 or 6 lumbar segments (transitional anatomy)."""
    if count not in (4, 5, 6):
        raise ValueError(f"lumbar vertebra count must be 4, 5 or 6; got {count}")
    return tuple(f"L{i}" for i in range(1, count + 1))


def levels_between(vertebrae: Sequence[str]) -> list[str]:
    """Return the disc levels between consecutive vertebrae, cranial to caudal."""
    return [level_name(a, b) for a, b in zip(vertebrae, vertebrae[1:])]
