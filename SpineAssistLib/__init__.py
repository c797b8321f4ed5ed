"""SpineAssistLib: lumbar spine MRI assessment, the library behind the SpineAssist Slicer module.

Nothing here imports slicer, qt, torch, ultralytics or monai at import time, so 3D Slicer can
load the module before those packages are installed, and the same code runs from a terminal.
"""

from SpineAssistLib.version import __version__

__all__ = ["__version__"]
