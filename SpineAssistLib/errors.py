"""Errors a user can act on. Their message says what was found and what to do; the CLI prints it
without a traceback and exits with status 2."""


class SpineAssistError(Exception):
    """Base class of every error SpineAssist reports to a user."""


class StudyError(SpineAssistError):
    """The input folder or DICOM files cannot give the series SpineAssist needs."""


class ModelError(SpineAssistError):
    """A bundled model is missing, corrupt, or cannot run on the chosen device."""


class Cancelled(SpineAssistError):
    """The user cancelled a running job; nothing half-written was left behind."""


class ResourcesError(SpineAssistError, FileNotFoundError):
    """SpineAssist's bundled Resources folder (models, schema) is missing or incomplete."""
