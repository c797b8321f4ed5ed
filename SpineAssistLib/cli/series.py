"""``spineassist series FOLDER``: list the series found in a DICOM folder and which ones an assessment would use."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("series", help="list the DICOM series in a folder and the sagittal/axial T2 an assessment would use",
                       description="Index FOLDER (recursively, headers only) and print one row per series: "
                       "modality, plane, weighting, slices, stacks of parallel slices, pixel spacing, problems. "
                       "When the folder holds several studies, the series are listed under their study.")
    p.add_argument("study", type=Path, metavar="FOLDER", help="folder holding the DICOM files of one or more studies")
    p.add_argument("--study", dest="study_uid", metavar="UID",
                   help="check the choice within this study (StudyInstanceUID) of a folder holding several")
    p.add_argument("--sagittal", metavar="UID", help="check this series as the sagittal choice")
    p.add_argument("--axial", metavar="UID", help="check this series as the axial choice")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from SpineAssistLib.dicom.index import index_folder, select_series, series_table

    index = index_folder(args.study)
    studies = index.assessable_studies()
    if len(studies) > 1 and not (args.study_uid or args.sagittal or args.axial):
        # listing is what a user needs here to make the choice, so no choice is not an error
        print(series_table(index))
        print(f"note: this folder holds {len(studies)} studies and an assessment reads one; none is marked. "
              f"Choose one with --study UID (the UIDs are on the study lines above), or give the folder of one study")
        return 0
    choice = select_series(index, sagittal_uid=args.sagittal, axial_uid=args.axial, study_uid=args.study_uid)
    print(series_table(index, choice))
    for note in choice.notes:
        print(f"note: {note}")
    return 0
