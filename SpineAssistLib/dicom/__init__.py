"""DICOM in: find the series a lumbar assessment needs in a folder (``index``; ``studies_under`` for
a tree of many studies), load them as image stacks with their geometry (``stacks``), and talk to a
PACS in DICOMweb (``dicomweb``: find studies, fetch them, store the SEG and SR back)."""
