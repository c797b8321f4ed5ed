"""``spineassist series STUDY``: list the series found in a DICOM folder and which ones an assessment would use."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("series", help="list the DICOM series in a folder and the sagittal/axial T2 an assessment would use",
                       description="Index STUDY (recursively, headers only) and print one row per series: "
                       "modality, plane, weighting, slices, stacks of parallel slices, pixel spacing, problems.")
    p.add_argument("study", type=Path, help="folder holding the study's DICOM files")
    p.add_argument("--sagittal", metavar="UID", help="check this series as the sagittal choice")
    p.add_argument("--axial", metavar="UID", help="check this series as the axial choice")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from SpineAssistLib.dicom.index import index_folder, select_series, series_table

    index = index_folder(args.study)
    choice = select_series(index, sagittal_uid=args.sagittal, axial_uid=args.axial)
    print(series_table(index, choice))
    for note in choice.notes:
        print(f"note: {note}")
    return 0
