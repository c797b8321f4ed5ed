"""The parameter node: where a scene keeps its assessment (corrections included) and which nodes show it.

A saved and reopened scene (``.mrb``) gives back the same Assessment and NodeSet through
``load_state``. Nodes are held as node references, so they survive the ID renaming Slicer does
when a scene is imported into one that already has nodes.
"""

from __future__ import annotations

from typing import Any

from SpineAssistLib.findings import Assessment
from SpineAssistLib.mrml.nodes import ATTR_LAYER, ATTR_SERIES, LAYER_FOLDERS, NodeSet, _subject_hierarchy

PARAMETER_NODE_TAG = "SpineAssist"  # singleton tag and module name, as Slicer's getParameterNode() uses
PARAM_ASSESSMENT = "Assessment"
PARAM_STATE_VERSION = "StateVersion"
STATE_VERSION = "1"

ROLE_VOLUME = "SpineAssistVolume"
ROLE_SEGMENTATION = "SpineAssistSegmentation"
ROLE_KEYPOINTS = "SpineAssistKeypoints"
ROLE_BOX = "SpineAssistBox"
ROLE_LINE = "SpineAssistLine"
ROLE_TABLE = "SpineAssistTable"
_ROLES = (ROLE_VOLUME, ROLE_SEGMENTATION, ROLE_KEYPOINTS, ROLE_BOX, ROLE_LINE, ROLE_TABLE)


def parameter_node(scene: Any, create: bool = True) -> Any | None:
    """Return the scene's SpineAssist parameter node (a singleton vtkMRMLScriptedModuleNode), made if ``create``."""
    import slicer

    node = scene.GetSingletonNode(PARAMETER_NODE_TAG, "vtkMRMLScriptedModuleNode")
    if node is None and create:
        node = slicer.vtkMRMLScriptedModuleNode()
        node.SetSingletonTag(PARAMETER_NODE_TAG)
        node.SetModuleName(PARAMETER_NODE_TAG)
        node.SetName(PARAMETER_NODE_TAG)
        node = scene.AddNode(node)
    return node


def save_state(scene: Any, assessment: Assessment, nodes: NodeSet) -> Any:
    """Write the assessment (JSON, corrections included) and the node references into the parameter node; return it."""
    node = parameter_node(scene)
    was_modifying = node.StartModify()
    try:
        node.SetParameter(PARAM_STATE_VERSION, STATE_VERSION)
        node.SetParameter(PARAM_ASSESSMENT, assessment.to_json(indent=None))  # type: ignore[arg-type]
        for role in _ROLES:
            node.RemoveNodeReferenceIDs(role)
        for volume in nodes.volumes.values():
            node.AddNodeReferenceID(ROLE_VOLUME, volume.GetID())
        if nodes.segmentation is not None:
            node.AddNodeReferenceID(ROLE_SEGMENTATION, nodes.segmentation.GetID())
        for keypoints in nodes.keypoints.values():
            node.AddNodeReferenceID(ROLE_KEYPOINTS, keypoints.GetID())
        for box in nodes.boxes:
            node.AddNodeReferenceID(ROLE_BOX, box.GetID())
        for line in nodes.lines:
            node.AddNodeReferenceID(ROLE_LINE, line.GetID())
        if nodes.table is not None:
            node.AddNodeReferenceID(ROLE_TABLE, nodes.table.GetID())
    finally:
        node.EndModify(was_modifying)
    return node


def _referenced(node: Any, role: str) -> list[Any]:
    return [node.GetNthNodeReference(role, i) for i in range(node.GetNumberOfNodeReferences(role))
            if node.GetNthNodeReference(role, i) is not None]


def load_state(scene: Any) -> tuple[Assessment, NodeSet]:
    """Return the assessment and its nodes kept in the scene's parameter node (e.g. after reading an .mrb)."""
    node = parameter_node(scene, create=False)
    if node is None or not node.GetParameter(PARAM_ASSESSMENT):
        raise ValueError("this scene has no SpineAssist assessment; run an assessment or open a scene SpineAssist saved")
    assessment = Assessment.from_json(node.GetParameter(PARAM_ASSESSMENT))
    tables = _referenced(node, ROLE_TABLE)
    sh = _subject_hierarchy(scene)
    study = sh.GetItemParent(sh.GetItemByDataNode(tables[0])) if tables else 0
    nodes = NodeSet(scene, study)
    nodes.volumes = {v.GetAttribute(ATTR_SERIES) or v.GetName(): v for v in _referenced(node, ROLE_VOLUME)}
    segmentations = _referenced(node, ROLE_SEGMENTATION)
    nodes.segmentation = segmentations[0] if segmentations else None
    nodes.keypoints = {k.GetAttribute(ATTR_SERIES) or k.GetName(): k for k in _referenced(node, ROLE_KEYPOINTS)}
    nodes.boxes = _referenced(node, ROLE_BOX)
    nodes.lines = _referenced(node, ROLE_LINE)
    nodes.table = tables[0] if tables else None
    if study:
        children = [sh.GetItemByPositionUnderParent(study, i) for i in range(sh.GetNumberOfItemChildren(study))]
        for layer, folder in LAYER_FOLDERS.items():
            if not folder:
                nodes.layer_items[layer] = study
                continue
            nodes.layer_items[layer] = next((c for c in children if sh.GetItemAttribute(c, ATTR_LAYER) == layer), 0)
    return assessment, nodes
