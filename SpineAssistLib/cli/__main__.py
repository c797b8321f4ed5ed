"""``python -m SpineAssistLib.cli``: the ``spineassist`` command."""

from SpineAssistLib.cli import entry

entry()
