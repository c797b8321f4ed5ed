"""The SpineAssist side panel (Qt). Imported only inside 3D Slicer, by SpineAssist.py's widget."""

from __future__ import annotations


class SpineAssistPanel:
    """The side panel. Until the panel issue lands it shows what SpineAssist is and where to run it."""

    def __init__(self, layout) -> None:
        import qt

        self.label = qt.QLabel(
            "SpineAssist's panel is not built yet. Run the assessment from a terminal:\n"
            "  spineassist assess STUDY_DIR --out OUT\n"
            "and load OUT/scene.mrb."
        )
        self.label.wordWrap = True
        layout.addWidget(self.label)
        layout.addStretch(1)

    def cleanup(self) -> None:
        pass
