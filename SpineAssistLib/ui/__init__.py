"""The user interfaces over the library: the Qt-free panel model and teaching steps, the Slicer
logic and Qt widget, the background process runner, dependency checks and sample data."""
