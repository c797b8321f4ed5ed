"""SpineAssist: interactive lumbar spine MRI assessment in 3D Slicer.

This file is the thin module shell. Everything else (study loading, models, grading, nodes,
exports) lives in SpineAssistLib, which imports no torch, ultralytics, monai or Qt at import time.
"""

import logging
import os

import slicer
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)

DISCLAIMER = (
    "<p><b>Research software, not a medical device.</b> The sagittal models were developed on 29 patients "
    "of a public research set (SPIDER) and on synthetic MRI, the axial models on synthetic MRI only; "
    "none is validated for clinical use. Every grade must be checked by a qualified reader, who has the "
    "last word.</p>"
)


class SpineAssist(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = "SpineAssist"
        self.parent.categories = ["Quantification"]
        self.parent.dependencies = []
        self.parent.contributors = ["SpineAssist developers"]
        self.parent.helpText = (
            "<p>Assess a lumbar MRI study (sagittal and axial T2): disc segmentation, vertebral keypoints, "
            "and per-level lumbar disc herniation (MSU size/zone/side), Pfirrmann grade and "
            "spondylolisthesis (Meyerding grade, slip %). Correct any finding; corrections are kept beside "
            "the model's values and exported (report, DICOM SEG/SR, training data).</p>" + DISCLAIMER
        )
        self.parent.acknowledgementText = (
            "Grading rules: Pfirrmann et al. (Spine 2001), the MSU classification (Mysliwiec et al., "
            "Eur Spine J 2010) and Meyerding (1932). Models built with Ultralytics YOLOv8 and MONAI."
        )
        slicer.app.connect("startupCompleted()", _register_sample_data)


def _register_sample_data():
    try:
        from SpineAssistLib.ui import sample_data

        sample_data.register(os.path.join(os.path.dirname(__file__), "Resources", "Icons", "SpineAssist.png"))
    except Exception as e:  # noqa: BLE001 - a missing sample must never stop Slicer from starting
        logging.warning("SpineAssist: synthetic sample study not registered: %s", e)


class SpineAssistWidget(ScriptedLoadableModuleWidget):
    def setup(self):
        ScriptedLoadableModuleWidget.setup(self)
        from SpineAssistLib.ui.widget import SpineAssistPanel  # noqa: PLC0415 - the panel imports Qt

        ui_widget = slicer.util.loadUI(self.resourcePath("UI/SpineAssist.ui"))
        self.layout.addWidget(ui_widget)
        ui_widget.setMRMLScene(slicer.mrmlScene)
        self.panel = SpineAssistPanel(slicer.util.childWidgetVariables(ui_widget))

    def enter(self):
        self.panel.enter()

    def cleanup(self):
        panel = getattr(self, "panel", None)
        if panel is not None:
            panel.cleanup()


class SpineAssistTest(ScriptedLoadableModuleTest):
    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_library_imports_without_heavy_packages()
        self.test_whole_flow_on_a_phantom_study()

    def test_library_imports_without_heavy_packages(self):
        import sys

        import SpineAssistLib.findings  # noqa: F401

        for heavy in ("torch", "ultralytics", "monai"):
            self.assertNotIn(heavy, sys.modules.get("SpineAssistLib.findings").__dict__)
        self.delayDisplay("SpineAssist library loaded")

    def test_whole_flow_on_a_phantom_study(self):
        """Phantom study -> DICOM module -> Run (background process) -> table, segments -> a correction."""
        from SpineAssistLib.ui import dependencies
        from SpineAssistLib.ui import sample_data
        from SpineAssistLib.findings import PfirrmannGrade
        from SpineAssistLib.mrml.nodes import TAG_STRUCTURE, segment_tag
        from SpineAssistLib.ui.panel_model import choice_index

        missing = dependencies.missing_requirements()
        if missing:
            self.skipTest("dependencies missing: " + ", ".join(missing))
        folder, series = sample_data.write_sample_study()
        sample_data.load_into_slicer(folder, series)
        panel = slicer.util.getModuleWidget("SpineAssist").panel
        panel.enter()
        ui = panel.ui
        self.assertIsNotNone(ui.sagittalSelector.currentNode())
        self.assertIsNotNone(ui.axialSelector.currentNode())
        ui.deviceComboBox.setCurrentText("auto")
        ui.runButton.click()
        self.assertFalse(ui.runButton.enabled)
        outcome = panel.job.wait_for_done(timeout=1800)
        self.assertTrue(outcome.ok, outcome.message)
        logic = panel.logic
        levels = logic.assessment.levels
        segmentation = logic.nodes.segmentation.GetSegmentation()
        discs = [i for i in range(segmentation.GetNumberOfSegments())
                 if segment_tag(segmentation.GetNthSegment(i), TAG_STRUCTURE) == "disc"]
        self.assertEqual(len(discs), len(levels))
        self.assertEqual(ui.levelsTable.rowCount, len(levels))
        self.assertTrue(ui.saveButton.enabled)
        level = levels[0]
        model = level.pfirrmann.model
        new = PfirrmannGrade(2 if model is None or model.grade != 2 else 3)
        panel.on_edit(level.name, "pfirrmann", choice_index("pfirrmann", new))
        self.assertEqual(level.pfirrmann.value, new)
        self.assertEqual(level.pfirrmann.model, model)
        self.assertTrue(panel.controller.dirty)
        ui.saveButton.click()
        self.assertEqual(panel.controller.error, "")
        self.assertFalse(panel.controller.dirty)
        export = panel.controller.export_training_data(os.path.join(slicer.app.temporaryPath, "SpineAssist-training"))
        self.assertGreater(export.counts["sag_disc_unet"], 0)
        self.delayDisplay("SpineAssist: whole flow passed")
