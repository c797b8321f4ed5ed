"""``make demo``: run SpineAssist's main job on a built-in example and say where the outputs are.

Stages that have not landed yet are named as such in the output, never faked.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m SpineAssistLib.demo")
    parser.add_argument("--out", type=Path, default=Path("demo-output"))
    args = parser.parse_args(argv)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)

    from .findings import Assessment, Level, MeyerdingGrade, MSUGrade, PfirrmannGrade, validate_findings_json
    from .mrml import new_scene

    # Until the phantom and the pipeline land, the demo exercises the data model and the scene writer.
    level = Level("L4-L5")
    level.pfirrmann.model = PfirrmannGrade(3)
    level.ldh.model = MSUGrade(2, "AB", "right")
    level.listhesis.model = MeyerdingGrade(1, 18.0, "antero")
    level.pfirrmann.correct(PfirrmannGrade(4), reader="demo-reader", note="example correction")
    assessment = Assessment(study_instance_uid="2.25.1", levels=[level])
    findings = assessment.save(out / "findings.json")
    validate_findings_json(Assessment.load(findings).to_dict())

    scene = new_scene()
    seg = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "SpineAssist discs")
    seg.CreateDefaultDisplayNodes()
    seg.GetSegmentation().AddEmptySegment("L4-L5", "L4-L5 intervertebral disc")
    mrb = out / "scene.mrb"
    scene.WriteToMRB(str(mrb))

    print("SpineAssist demo")
    print(f"  findings (example, schema-valid): {findings}")
    print(f"  Slicer scene:                     {mrb}")
    print(f"  {level.name}: {level.ldh.value.label}, {level.pfirrmann.value.label} "
          f"(model said {level.pfirrmann.model.label}), {level.listhesis.value.label}")
    print("  Not yet available: synthetic study (phantom), model inference, report, DICOM SEG/SR.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
