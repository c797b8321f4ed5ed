"""The clinical grading rules as pure functions on coordinates (LPS mm) and image values.

The models only find points and masks; every grade a reader sees comes from here (GRADING.md),
with the measurements (units included) and the geometry it was measured from, so a reader can
check it and a teacher can show it. Each result's ``to_finding()`` fills a ``findings.Finding``.
One file per rule: ``canal``, ``levels``, ``meyerding``, ``msu``, ``pfirrmann``, ``slice_mapping``.
"""

from SpineAssistLib.grading.canal import (
                     CanalMeasure,
                     canal_ap_at_disc,
                     canal_ap_from_corners,
                     disc_axis_from_corners,
                     stenosis_grade,
)
from SpineAssistLib.grading.levels import (
                     LabelledDisc,
                     LabelledVertebra,
                     LevelLabelling,
                     SpineDetection,
                     label_levels,
                     recount_lumbar_levels,
                     relabel_levels,
                     vertebrae_cranial_to_caudal,
)
from SpineAssistLib.grading.meyerding import (
                     MeyerdingResult,
                     meyerding_from_percent,
                     meyerding_grade,
)
from SpineAssistLib.grading.msu import (
                     DiscMaterial,
                     MSUResult,
                     disc_material,
                     herniation_from_masks,
                     msu_grade,
                     msu_size,
                     select_maximal_extrusion,
)
from SpineAssistLib.grading.pfirrmann import (
                     PfirrmannResult,
                     pfirrmann_grade,
                     rule_based_pfirrmann,
)
from SpineAssistLib.grading.slice_mapping import (
                     SliceAssignment,
                     SliceMapping,
                     SlicePlane,
                     disc_point_clouds,
                     map_axial_slices,
)
from SpineAssistLib.grading.vectors import voxel_centers_lps

__all__ = [
    "CanalMeasure", "canal_ap_at_disc", "canal_ap_from_corners", "disc_axis_from_corners", "stenosis_grade",
    "LabelledDisc", "LabelledVertebra", "LevelLabelling", "SpineDetection", "label_levels",
    "recount_lumbar_levels", "relabel_levels", "vertebrae_cranial_to_caudal",
    "MeyerdingResult", "meyerding_from_percent", "meyerding_grade",
    "DiscMaterial", "MSUResult", "disc_material", "herniation_from_masks", "msu_grade", "msu_size", "select_maximal_extrusion",
    "PfirrmannResult", "pfirrmann_grade", "rule_based_pfirrmann",
    "SliceAssignment", "SliceMapping", "SlicePlane", "disc_point_clouds", "map_axial_slices",
    "voxel_centers_lps",
]
