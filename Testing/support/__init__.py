"""Helpers shared by the tests (no tests here): DICOM series built with pydicom, oracle models, hand-built
cases, the toy and phantom studies. Importable as ``support`` (pyproject: pytest ``pythonpath = ["Testing"]``)."""
