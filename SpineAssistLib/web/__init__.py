"""Review and correct in a browser: a trame-slicer page over the panel's controller (``spineassist view``).

``app`` builds the page (Slicer's own slice views, rendered on the server, and a side panel) over
``SpineAssistLib.ui.controller.PanelController``, the model the Slicer panel shows too; ``access``
keeps the server to 127.0.0.1 unless told otherwise, with a token in the URL then. Needs the
``web`` extra (trame-slicer); imported only by ``spineassist view`` and its tests.
"""
