"""SPIDER importer (PNG-slice and .mha layouts) and the real-data scoring of pipeline results, on small
synthetic folders written in those layouts (no patient data in the repository)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from SpineAssistLib.anatomy import DISC_LABELS, POSTERIOR_ELEMENTS_LABEL, VERTEBRA_LABELS
from SpineAssistLib.errors import SpineAssistError

PITCH = 40          # px between disc centres
DISC_ROWS = [30 + PITCH * i for i in range(7)]      # disc centre rows, cranial to caudal
ANTERIOR, POSTERIOR = 40, 99                        # the bodies' and discs' first and last column


def _png_slice() -> tuple[np.ndarray, np.ndarray]:
    """Return (image, mask) of one canonical sagittal slice: 7 discs 6 px tall, bodies between, canal behind."""
    img = np.full((300, 160), 20, np.uint8)
    mask = np.zeros((300, 160), np.uint8)
    for i, r in enumerate(DISC_ROWS):
        mask[r - 3:r + 3, ANTERIOR:POSTERIOR + 1] = 29
        if i + 1 < len(DISC_ROWS):
            mask[r + 3:DISC_ROWS[i + 1] - 3, ANTERIOR:POSTERIOR + 1] = 76
    mask[0:DISC_ROWS[0] - 3, ANTERIOR:POSTERIOR + 1] = 76      # the body above the top disc
    mask[:, 110:121] = 150                                    # canal
    mask[100:120, 130:141] = 76                               # a spinous process: touches no disc
    img[mask == 29] = 200
    img[mask == 76] = 90
    img[mask == 150] = 250
    return img, mask


def _png_folder(root: Path, patients=("3", "4", "7"), slices=3) -> Path:
    import cv2

    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    img, mask = _png_slice()
    for p in patients:
        for n in range(40, 40 + slices):
            cv2.imwrite(str(root / "images" / f"{p}_t2_SPACE_slice{n}.png"), img)
            cv2.imwrite(str(root / "masks" / f"{p}_t2_SPACE_slice{n}.png"), mask)
    with open(root / "radiological_gradings.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["Patient", "IVD label", "Modic", "UP endplate", "LOW endplate", "Spondylolisthesis",
                    "Disc herniation", "Disc narrowing", "Disc bulging", "Pfirrman grade"])
        for p in patients:
            for ivd in range(1, 8):
                w.writerow([p, ivd, 0, 0, 0, int(ivd == 1), 0, 0, 0, 4 if ivd == 1 else 2])
    return root


def test_png_patient_levels_bodies_corners_and_spacing(tmp_path):
    from SpineAssistLib.training.spider import read_gradings, read_png_patient

    root = _png_folder(tmp_path / "spider")
    case = read_png_patient(root, "3", read_gradings(root / "radiological_gradings.csv"))
    assert case.levels == ["T11-T12", "T12-L1", "L1-L2", "L2-L3", "L3-L4", "L4-L5", "L5-S1"]
    lab = case.labels[1]
    assert lab[DISC_ROWS[-1], 70] == DISC_LABELS["L5-S1"] and lab[DISC_ROWS[0], 70] == DISC_LABELS["T11-T12"]
    assert lab[DISC_ROWS[-1] - 20, 70] == VERTEBRA_LABELS["L5"]          # the body above L5-S1
    assert lab[DISC_ROWS[-2] - 20, 70] == VERTEBRA_LABELS["L4"]
    assert lab[110, 135] == POSTERIOR_ELEMENTS_LABEL
    assert lab[DISC_ROWS[-1] + 10, 70] == VERTEBRA_LABELS["S1"]          # the sacral top drawn below L5-S1
    # 37 mm between neighbouring disc centres, 40 px apart here
    assert case.pixel_spacing == pytest.approx((37.0 / PITCH, 37.0 / PITCH))
    c = case.corners_px[1]
    # L4's inferior corners: the ends of its contact with the L4-L5 disc (disc rows 227-232)
    ax, ay = c["L4 anterior-inferior"]
    px, py = c["L4 posterior-inferior"]
    assert (ax, ay, px, py) == (ANTERIOR, 226, POSTERIOR, 226)          # its last row
    sx, sy = c["L5 anterior-superior"]
    assert (sx, sy) == (ANTERIOR, DISC_ROWS[-2] + 3)                    # L5's first row
    # S1's superior corners come from the L5-S1 disc's own lower edge
    s1a, s1p = c["S1 anterior-superior"], c["S1 posterior-superior"]
    assert s1a[0] == ANTERIOR and s1p[0] == POSTERIOR and s1a[1] == DISC_ROWS[-1] + 2
    assert case.gradings["L5-S1"]["pfirrmann"] == 4 and case.gradings["L5-S1"]["spondylolisthesis"] == 1


def test_ivd_label_zero_leaves_the_lowest_disc_unnamed(tmp_path):
    from SpineAssistLib.training.spider import read_png_patient

    root = _png_folder(tmp_path / "spider", patients=("3",))
    gradings = {"3": {0: {"pfirrmann": 1, "herniation": 0}, 1: {"pfirrmann": 3, "herniation": 0}}}
    case = read_png_patient(root, "3", gradings)
    lab = case.labels[0]
    assert lab[DISC_ROWS[-2], 70] == DISC_LABELS["L5-S1"]           # label 1 is the one above label 0
    assert lab[DISC_ROWS[-1] - 20, 70] == VERTEBRA_LABELS["S1"]      # the body between them is S1
    assert case.levels[-1] == "L5-S1" and len(case.levels) == 6


def test_build_real_sets_leaves_out_held_out_patients(tmp_path):
    from SpineAssistLib.training.spider import build_real_sets, read_gradings

    root = _png_folder(tmp_path / "spider")
    out = tmp_path / "sets"
    done = build_real_sets(root, out, read_gradings(root / "radiological_gradings.csv"), copies=1, val_patients=1)
    assert done["patients"] == {"train": ["3"], "val": ["4"]}
    written = [p.name for p in out.rglob("*") if p.is_file()]
    assert not any(n.startswith("spider7_") for n in written)          # patient 7 is a held-out test patient
    assert done["models"]["sag_disc_unet"]["train"] == 3                # every slice holds discs
    pose = (out / "sag_vertebra_pose" / "labels" / "train").glob("*.txt")
    classes = {int(line.split()[0]) for f in pose for line in f.read_text().splitlines()}
    assert classes == {0, 1}                                            # vertebrae and the sacrum
    assert any((out / "sag_pfirrmann_cls" / "train" / "grade4").iterdir())   # L5-S1
    corners = list((out / "sag_disc_corners" / "labels" / "train").glob("*_L4-L5.txt"))
    assert corners and all(len(f.read_text().split()) == 5 + 3 * 4 for f in corners)


def test_png_layout_bad_input_names_the_file(tmp_path):
    import cv2

    from SpineAssistLib.training.spider import png_patients, read_png_patient

    root = _png_folder(tmp_path / "spider", patients=("3",))
    bad = root / "masks" / "3_t2_SPACE_slice41.png"
    _, mask = _png_slice()
    mask[0, 0] = 5
    cv2.imwrite(str(bad), mask)
    with pytest.raises(SpineAssistError, match=r"slice41\.png: mask grey values \[5\]"):
        read_png_patient(root, "3")
    bad.unlink()
    with pytest.raises(SpineAssistError, match=r"3_t2_SPACE_slice41\.png has no mask"):
        png_patients(root)
    with pytest.raises(SpineAssistError, match="needs images/ and masks/"):
        png_patients(tmp_path)


def test_mha_layout_reads_as_the_png_layout(tmp_path):
    import SimpleITK as sitk

    from SpineAssistLib.training.spider import read_mha_patient

    _, mask = _png_slice()
    # SPIDER numbers: vertebrae 1-25, discs 201-225 from the caudal end, canal 100; (z, y, x) with z up
    lab2d = np.zeros(mask.shape, np.uint8)
    lab2d[mask == 150] = 100
    lab2d[mask == 76] = 1
    for i, r in enumerate(reversed(DISC_ROWS)):
        lab2d[r - 3:r + 3][mask[r - 3:r + 3] == 29] = 201 + i
    vol = np.repeat(lab2d[::-1, :, None], 4, axis=2)                # rows head->feet become +z up
    img = (vol > 0).astype(np.float32) * 100
    for a, name in ((img, "image"), (vol, "mask")):
        x = sitk.GetImageFromArray(a)
        x.SetSpacing((2.0, 0.5, 0.5))
        sitk.WriteImage(x, str(tmp_path / f"{name}.mha"))
    case = read_mha_patient(tmp_path / "image.mha", tmp_path / "mask.mha")
    assert case.levels[-1] == "L5-S1" and not case.spacing_estimated
    assert case.pixel_spacing == pytest.approx((0.5, 0.5))
    assert case.labels[1][DISC_ROWS[-1], 70] == DISC_LABELS["L5-S1"]
    assert case.labels[1][DISC_ROWS[-1] - 20, 70] == VERTEBRA_LABELS["L5"]


def _result_from_truth(case, rename: dict[str, str] | None = None, pfirrmann: int = 2):
    """Return an AssessmentResult whose disc labels are the case's own (optionally renamed)."""
    from SpineAssistLib.findings import Assessment, Level, PfirrmannFinding, PfirrmannGrade
    from SpineAssistLib.pipeline.result import AssessmentResult
    from SpineAssistLib.training.spider import image_stack

    stack = image_stack(case)
    rename = rename or {}
    labels = np.zeros(case.labels.shape, np.uint16)
    for name, v in DISC_LABELS.items():
        labels[case.labels == v] = DISC_LABELS[rename.get(name, name)]
    stack.labels = labels
    names = list(dict.fromkeys(rename.get(n, n) for n in case.levels))
    levels = [Level(n, pfirrmann=PfirrmannFinding(model=PfirrmannGrade(pfirrmann))) for n in names]
    return AssessmentResult(Assessment("x", levels=levels), sagittal=stack)


def test_real_scoring_counts_misnamed_discs(tmp_path):
    from SpineAssistLib.training.real_eval import score_case, summarise
    from SpineAssistLib.training.spider import read_gradings, read_png_patient

    root = _png_folder(tmp_path / "spider", patients=("3",))
    case = read_png_patient(root, "3", read_gradings(root / "radiological_gradings.csv"))
    right = score_case(case, _result_from_truth(case))
    assert [x["level"] for x in right["levels"]] == ["L1-L2", "L2-L3", "L3-L4", "L4-L5", "L5-S1"]
    assert all(x["dice"] == 1.0 and x["named"] for x in right["levels"])
    # every disc one level too high: the same voxels, every name wrong
    shift = {"L5-S1": "L4-L5", "L4-L5": "L3-L4", "L3-L4": "L2-L3", "L2-L3": "L1-L2", "L1-L2": "T12-L1",
             "T12-L1": "T11-T12", "T11-T12": "T11-T12"}
    wrong = score_case(case, _result_from_truth(case, shift))
    assert all(x["dice"] == 1.0 and not x["named"] and x["pfirrmann_pred"] is None for x in wrong["levels"])
    failed = score_case(case, None, "the sacrum was not found")
    s = summarise([right, wrong, failed], n_boot=50)
    assert s["disc_dice"]["value"] == pytest.approx(2 / 3, abs=1e-4)          # rounded to 4 places
    assert s["discs_named_right"]["value"] == pytest.approx(1 / 3, abs=1e-4)
    assert s["failed_runs"] == 1 and s["patients_all_named"] == 1
    # grade 2 everywhere against the radiologists' 2 (four levels) and 4 (L5-S1)
    assert s["pfirrmann_exact"]["value"] == pytest.approx(0.8)
    assert s["pfirrmann_within_one"]["value"] == pytest.approx(0.8)


def test_variants_move_the_truth_with_the_pixels(tmp_path):
    from SpineAssistLib.training.real_eval import variant_case
    from SpineAssistLib.training.spider import image_stack, read_png_patient

    root = _png_folder(tmp_path / "spider", patients=("3",), slices=9)
    case = read_png_patient(root, "3")
    k, r, c = 2, DISC_ROWS[-1], 50
    here = image_stack(case).pixel_to_lps(k, np.array(r), np.array(c))
    flipped = variant_case(case, "flipped")
    n, w = case.images.shape[0], case.images.shape[2]
    there = image_stack(flipped).pixel_to_lps(n - 1 - k, np.array(r), np.array(w - 1 - c))
    assert np.allclose(here, there)                                         # the same patient point
    assert flipped.labels[n - 1 - k, r, w - 1 - c] == case.labels[k, r, c]
    assert flipped.corners_px[n - 1 - k]["L4 anterior-inferior"] == (w - 1 - ANTERIOR, 226)
    thick = variant_case(case, "thick")
    assert thick.images.shape[0] == len(range(case.mid % 4, 9, 4)) and thick.mid * 4 + case.mid % 4 == case.mid
    assert np.linalg.norm(thick.affine[:3, 0]) == pytest.approx(4 * np.linalg.norm(case.affine[:3, 0]))
    off = variant_case(case, "off-centre")
    assert off.mid == 2 and np.allclose(image_stack(off).pixel_to_lps(off.mid, np.array(r), np.array(c)),
                                        image_stack(case).pixel_to_lps(case.mid, np.array(r), np.array(c)))


def test_data_commands_leave_a_recipe_that_training_records(tmp_path, capsys):
    import json

    from SpineAssistLib.cli import main
    from SpineAssistLib.training.replay import Step, replay_argv

    root = _png_folder(tmp_path / "spider", patients=("3", "4"))
    sets = tmp_path / "sets"
    assert main(["data", "spider", str(root), "--out", str(sets), "--copies", "1", "--val-patients", "1"]) == 0
    assert main(["data", "phantom", "--out", str(sets), "--sagittal-phantoms", "2", "--copies", "1",
                 "--models", "sag_disc_unet", "--cache", str(tmp_path / "cache")]) == 0
    recipe = json.loads((sets / "recipe.json").read_text())
    assert [r["command"].split()[:3] for r in recipe] == [["spineassist", "data", "spider"],
                                                          ["spineassist", "data", "phantom"]]
    assert recipe[0]["patients"] == {"train": ["3"], "val": ["4"]} and "7" in recipe[0]["held_out_left_out"]
    assert recipe[1]["sagittal_only_seeds"] == [5000, 5001] and recipe[1]["synthetic_contrast"] == 0.5
    # a training run on those sets records how they were made (0 epochs: the starting weights)
    out = tmp_path / "models"
    assert main(["train", "sag_disc_unet", "--data", str(sets), "--epochs", "0", "--out", str(out)]) == 0
    entry = next(m for m in json.loads((out / "manifest.json").read_text())["models"] if m["name"] == "sag_disc_unet")
    data = entry["training"]["data"]
    assert data["recipe"] == recipe and data["source"].startswith("SPIDER") and "phantom" in data["source"]
    # a replay without the sets says how to make them again
    step = Step("k", "sag_disc_unet", f"spineassist train sag_disc_unet --data {tmp_path / 'gone'}", None, None,
                recipe=tuple(recipe))
    with pytest.raises(SpineAssistError, match="make it again with: spineassist data spider"):
        replay_argv(step, tmp_path / "scratch", None, "cpu")


def test_without_a_gradings_table_the_commands_say_what_to_pass(tmp_path, capsys):
    from SpineAssistLib.cli import main

    root = _png_folder(tmp_path / "spider", patients=("3",))
    (root / "radiological_gradings.csv").unlink()
    for argv in (["data", "spider", str(root), "--out", str(tmp_path / "sets")],
                 ["evaluate", "--real", str(root), "--out", str(tmp_path / "eval")]):
        assert main(argv) == 2
        assert "no radiological_gradings.csv under" in capsys.readouterr().err


def _spider_folder(root: Path) -> None:
    import SimpleITK as sitk

    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    arr = np.full((40, 32, 6), 100, np.float32)          # numpy (z, y, x): 6 sagittal slices along x
    lab = np.zeros(arr.shape, np.uint8)
    lab[8:12, 8:24, 1:5] = 201                             # lowest disc (L5-S1)
    lab[20:24, 8:24, 1:5] = 202                            # L4-L5
    lab[13:19, 8:24, 1:5] = 1
    arr[lab > 0] = 800
    arr[36:40, :, :] = 2000                                # bright band at the top (superior, +z)
    for a, name in ((arr, "images"), (lab, "masks")):
        img = sitk.GetImageFromArray(a)
        img.SetSpacing((3.3, 0.8, 0.8))
        sitk.WriteImage(img, str(root / name / "7_t2.mha"))
    with open(root / "radiological_gradings.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["Patient", "IVD label", "Modic", "UP endplate", "LOW endplate", "Spondylolisthesis",
                    "Disc herniation", "Disc narrowing", "Disc bulging", "Pfirrman grade"])
        w.writerow([7, 1, 0, 0, 0, 0, 1, 1, 0, 4])
        w.writerow([7, 2, 0, 0, 0, 0, 0, 0, 0, 2])


def test_spider_mha_reader_and_train_builds_all_four_sagittal_sets(tmp_path):
    from SpineAssistLib.training.spider import build_real_sets, level_of_ivd, read_gradings, read_spider_case

    _spider_folder(tmp_path / "spider")
    g = read_gradings(tmp_path / "spider" / "radiological_gradings.csv")
    assert g["7"][1]["pfirrmann"] == 4 and g["7"][1]["herniation"] == 1 and g["7"][2]["pfirrmann"] == 2
    assert (level_of_ivd(1), level_of_ivd(2), level_of_ivd(0), level_of_ivd(20)) == ("L5-S1", "L4-L5", None, None)
    images, labels, A = read_spider_case(tmp_path / "spider" / "images" / "7_t2.mha",
                                         tmp_path / "spider" / "masks" / "7_t2.mha")
    assert images.shape == (6, 40, 32)               # sagittal slices, head up
    assert images[0, :4].mean() == 2000               # the superior band is on the top rows
    # row 0 is the most superior voxel: its LPS z is the largest
    assert (A @ [0, 0, 0, 1])[2] > (A @ [0, 39, 0, 1])[2]
    assert np.isin(labels[2], [201]).sum() == 4 * 16
    # patient 7 is a held-out test patient: nothing of it may be written
    with pytest.raises(SpineAssistError, match="no patients outside the held-out test set"):
        build_real_sets(tmp_path / "spider", tmp_path / "sets", g)
    for name in ("images", "masks"):
        (tmp_path / "spider" / name / "7_t2.mha").rename(tmp_path / "spider" / name / "3_t2.mha")
    g = {"3": g["7"]}
    out = build_real_sets(tmp_path / "spider", tmp_path / "sets", g, copies=1, val_patients=0)
    assert out["models"]["sag_disc_unet"]["train"] == 4          # slices 1-4 hold discs
    assert any((tmp_path / "sets" / "sag_pfirrmann_cls" / "train" / "grade4").iterdir())
    assert any((tmp_path / "sets" / "sag_pfirrmann_cls" / "train" / "grade2").iterdir())
    with pytest.raises(SpineAssistError, match="SPIDER is sagittal"):
        build_real_sets(tmp_path / "spider", tmp_path / "x", g, ["ax_msu_pose"])


def test_real_scoring_of_the_disc_gradings_the_pipeline_reports(tmp_path):
    """Endplate and Modic grades read off the pipeline's levels, against SPIDER's columns, only at
    discs named right; a level with no value (not assessed) counts as not graded."""
    from SpineAssistLib.findings import ModicFinding, ModicType, Presence, UpperEndplateFinding
    from SpineAssistLib.training.real_eval import score_case, summarise
    from SpineAssistLib.training.spider import read_gradings, read_png_patient

    root = _png_folder(tmp_path / "spider", patients=("3",))
    # IVD label 1 is L5-S1 ... 5 is L1-L2; the thoracic discs (6, 7) are not scored
    up = {1: 1, 2: 1, 3: 0, 4: 0, 5: 0}
    modic = {1: 2, 2: 0, 3: 0, 4: 2, 5: 0}
    with open(root / "radiological_gradings.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["Patient", "IVD label", "Modic", "UP endplate", "LOW endplate", "Spondylolisthesis",
                    "Disc herniation", "Disc narrowing", "Disc bulging", "Pfirrman grade"])
        for ivd in range(1, 8):
            w.writerow([3, ivd, modic.get(ivd, 0), up.get(ivd, 0), 0, 0, 0, 0, 0, 2])
    case = read_png_patient(root, "3", read_gradings(root / "radiological_gradings.csv"))
    result = _result_from_truth(case)
    # (present, confidence of the value given) from L5-S1 up; L1-L2's endplate left not assessed
    calls = {"L5-S1": (True, 0.9), "L4-L5": (False, 0.8), "L3-L4": (True, 0.7), "L2-L3": (False, 0.9)}
    modic_calls = {"L5-S1": 2, "L4-L5": 0, "L3-L4": 2, "L2-L3": 0, "L1-L2": 0}
    for lv in result.assessment.levels:
        if lv.name in calls:
            present, conf = calls[lv.name]
            lv.endplate_upper = UpperEndplateFinding(model=Presence(present), confidence=conf)
        if lv.name in modic_calls:
            lv.modic = ModicFinding(model=ModicType(modic_calls[lv.name]), confidence=0.6)
    rec = score_case(case, result)
    by = {x["level"]: x for x in rec["levels"]}
    assert by["L4-L5"]["endplate_upper_truth"] is True and by["L4-L5"]["endplate_upper_pred"] is False
    assert by["L4-L5"]["endplate_upper_p"] == pytest.approx(0.2)        # the probability of "present"
    assert by["L1-L2"]["endplate_upper_pred"] is None and by["L1-L2"]["endplate_upper_truth"] is False
    g = summarise([rec], n_boot=20)["disc_gradings"]
    e = g["endplate_upper"]
    # truth present at L5-S1, L4-L5 (found 1 of 2); absent at L3-L4, L2-L3 (1 false call of 2)
    assert e["sensitivity"]["value"] == pytest.approx(0.5) and e["specificity"]["value"] == pytest.approx(0.5)
    assert e["balanced_accuracy"]["value"] == pytest.approx(0.5) and e["positives"] == 2
    # present-probabilities 0.9, 0.2 against 0.7, 0.1: 3 of 4 pairs ranked right
    assert e["auc"]["value"] == pytest.approx(0.75)
    assert e["graded_share"]["value"] == pytest.approx(0.8)              # 4 of 5 lumbar discs
    assert g["narrowing"]["balanced_accuracy"]["value"] is None and g["narrowing"]["graded_share"]["value"] == 0
    m = g["modic"]
    assert m["type_accuracy"]["value"] == pytest.approx(0.6) and m["changes"] == 2
    assert m["change_balanced_accuracy"]["value"] == pytest.approx((0.5 + 2 / 3) / 2, abs=1e-4)
    assert m["majority_accuracy"] == pytest.approx(0.6)
    from SpineAssistLib.training.real_eval import markdown_table
    md = markdown_table({"summary": summarise([rec], n_boot=20), "patients": ["3"]})
    row = next(line for line in md.splitlines() if line.startswith("| upper endplate defect"))
    assert "| 2 of 4 | 0.500" in row and "| disc narrowing | 0 of 0 | n/a" in md
    assert "Modic type (0/1/2/3) accuracy: 0.600" in md
    # every disc named one level too high: no grade is scored
    shift = {"L5-S1": "L4-L5", "L4-L5": "L3-L4", "L3-L4": "L2-L3", "L2-L3": "L1-L2", "L1-L2": "T12-L1",
             "T12-L1": "T11-T12", "T11-T12": "T11-T12"}
    wrong = score_case(case, _result_from_truth(case, shift))
    assert all(x["endplate_upper_pred"] is None and x["modic_pred"] is None for x in wrong["levels"])


def test_storing_real_figures_keeps_a_model_s_own_held_out_evaluation(tmp_path):
    """``evaluate --real --update-manifest`` once replaced the canal model's own held-out figures
    (``training.canal_eval``) with the pipeline's summary."""
    import json

    from SpineAssistLib.training.real_eval import store_real_in_manifest

    canal_own = {"sha256": "c" * 64, "source": "training.canal_eval (SPIDER held-out patients 7)", "canal_dice": {}}
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps({"models": [
        {"name": "sag_disc_unet", "real_metrics": {"source": "spineassist evaluate --real (old)", "disc_dice": 0.1}},
        {"name": "sag_canal_unet", "real_metrics": canal_own},
        {"name": "sag_disc_grades"}, {"name": "ax_disc_seg"}]}))
    summary = {"disc_dice": {"value": 0.87}, "disc_gradings": {"narrowing": {"positives": 3}}}
    report = {"patients": ["7"], "summary": summary,
              "models": [{"name": n, "sha256": n[:1] * 64} for n in ("sag_disc_unet", "sag_canal_unet", "sag_disc_grades")]}
    store_real_in_manifest(report, path)
    got = {m["name"]: m.get("real_metrics") for m in json.loads(path.read_text())["models"]}
    assert got["sag_canal_unet"] == canal_own
    assert got["sag_disc_unet"]["disc_dice"] == {"value": 0.87} and "disc_gradings" not in got["sag_disc_unet"]
    assert got["sag_disc_grades"]["disc_gradings"] == {"narrowing": {"positives": 3}}
    assert got["ax_disc_seg"] is None                                     # not measured by this report
