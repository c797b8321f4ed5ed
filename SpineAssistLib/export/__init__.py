"""Exports of an assessment: findings JSON/CSV, an HTML report, DICOM SEG and DICOM SR, de-identified on request.

One module per format; every writer writes atomically (:mod:`.atomic`). Nothing here imports
highdicom or slicer-core at package import time, so Slicer can load the package before they exist.

Usage::

    from SpineAssistLib.export import findings_csv, report_html, dicom_seg, dicom_sr
    findings_csv.write_findings_csv(assessment, out / "findings.csv")
    report_html.write_report_html(assessment, out / "report.html", images=[...])
    dicom_seg.write_disc_seg(sagittal_datasets, disc_labels, assessment, out / "seg.dcm")
    dicom_sr.write_measurement_report(assessment, sagittal_datasets + axial_datasets, out / "sr.dcm")
"""
