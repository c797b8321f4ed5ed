"""Assessment <-> Slicer MRML nodes. Runs inside 3D Slicer and, without Qt, with the ``slicer-core`` wheel.

``slicer`` is imported inside functions only, so this package can be imported anywhere. This is
the logic the Qt panel is a thin layer over; it knows nothing of widgets.

Usage (Slicer's Python console, or a terminal with slicer-core)::

    from SpineAssistLib import mrml
    scene = mrml.new_scene()      # terminal only; in Slicer use slicer.mrmlScene
    nodes = mrml.show_assessment(scene, assessment, volumes={"sagittal": (voxels, affine)},
                                 label_maps={"sagittal": (labels, affine)}, keypoints={"sagittal": points})
    mrml.save_state(scene, assessment, nodes)
    mrml.apply_correction(scene, nodes, assessment, "L4-L5", "pfirrmann", PfirrmannGrade(4), reader="dr.lee")
    live = mrml.LiveRegrading(scene, nodes, assessment, reader="dr.lee")   # moved corners regrade at once
    mrml.write_mrb(scene, "case.mrb")
    assessment, nodes = mrml.load_state(mrml.read_mrb("case.mrb"))
"""

from __future__ import annotations

from SpineAssistLib.mrml.edits import (
                    KeypointEdit,
                    LiveRegrading,
                    NodeEdits,
                    apply_correction,
                    corrections_from_nodes,
                    grade_from_keypoints,
                    level_keypoints,
                    observe_keypoints,
                    regrade_from_keypoints,
                    relabel_levels,
                    reset_finding,
                    shifted_level_names,
)
from SpineAssistLib.mrml.nodes import (
                    LAYERS,
                    TABLE_COLUMNS,
                    DetectionBox,
                    NodeSet,
                    center_views_on_level,
                    ijk_to_ras_matrix,
                    keypoint_level,
                    layer_visible,
                    level_center_ras,
                    refresh_table,
                    scene_inputs,
                    set_keypoints_locked,
                    set_layer_visible,
                    show_assessment,
                    table_rows,
)
from SpineAssistLib.mrml.scene import new_scene, read_mrb, register_segmentation_converters, write_mrb
from SpineAssistLib.mrml.state import load_state, parameter_node, save_state
from SpineAssistLib.mrml.terminology import terminology_for, terminology_types

__all__ = [
    "DetectionBox", "KeypointEdit", "LAYERS", "LiveRegrading", "NodeEdits", "NodeSet", "TABLE_COLUMNS",
    "apply_correction", "center_views_on_level", "corrections_from_nodes", "grade_from_keypoints",
    "ijk_to_ras_matrix", "keypoint_level", "layer_visible", "level_center_ras", "level_keypoints", "load_state",
    "new_scene", "observe_keypoints", "parameter_node", "read_mrb", "refresh_table", "register_segmentation_converters",
    "regrade_from_keypoints", "relabel_levels", "reset_finding", "save_state", "scene_inputs", "set_keypoints_locked",
    "set_layer_visible", "shifted_level_names", "show_assessment", "table_rows", "terminology_for",
    "terminology_types", "write_mrb",
]
