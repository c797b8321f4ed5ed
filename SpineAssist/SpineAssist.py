"""SpineAssist: interactive lumbar spine MRI assessment in 3D Slicer.

This file is the thin module shell. Everything else (study loading, models, grading, nodes,
exports) lives in SpineAssistLib, which imports no torch, ultralytics, monai or Qt at import time.
"""

import slicer
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)

DISCLAIMER = (
    "<p><b>Research software, not a medical device.</b> The bundled models were trained on synthetic "
    "(phantom) MRI only and have not been validated on patients. Every grade must be checked by a "
    "qualified reader, who has the last word.</p>"
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


class SpineAssistWidget(ScriptedLoadableModuleWidget):
    def setup(self):
        ScriptedLoadableModuleWidget.setup(self)
        from SpineAssistLib.widget import SpineAssistPanel  # noqa: PLC0415 - the panel imports Qt

        self.panel = SpineAssistPanel(self.layout)

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

    def test_library_imports_without_heavy_packages(self):
        import sys

        import SpineAssistLib.findings  # noqa: F401

        for heavy in ("torch", "ultralytics", "monai"):
            self.assertNotIn(heavy, sys.modules.get("SpineAssistLib.findings").__dict__)
        self.delayDisplay("SpineAssist library loaded")
