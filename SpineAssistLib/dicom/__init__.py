"""DICOM in: find the series a lumbar assessment needs in a folder (``index``) and load them as
image stacks with their geometry (``stacks``)."""
