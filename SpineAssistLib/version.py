"""The one place the SpineAssist version is set (pyproject reads it from here)."""

__version__ = "0.1.0"
