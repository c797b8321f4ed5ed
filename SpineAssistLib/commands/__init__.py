"""One module per ``spineassist`` subcommand; see ``SpineAssistLib.cli.COMMANDS``."""
