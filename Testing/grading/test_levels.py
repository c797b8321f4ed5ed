"""Level labelling from name-less detections, anchored on the sacrum; relabelling moves findings."""

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from support.transforms import PROPERTY_SETTINGS, similarities

from SpineAssistLib.anatomy import levels_between
from SpineAssistLib.findings import Assessment, Level, MSUGrade, PfirrmannGrade
from SpineAssistLib.grading import (SpineDetection, label_levels, recount_lumbar_levels, relabel_levels,
                                    vertebrae_cranial_to_caudal)

SPACING = 36.0  # mm between vertebral centroids


def spine(lumbar_count=5, top="T12", lordosis_mm=20.0):
    """Return (true names, detections) for vertebrae ``top`` ... S1 and the discs between them.

    Centroids follow a lordotic arc: the mid-lumbar spine lies ``lordosis_mm`` anterior (LPS -y)
    of its ends; cranial is +z. Vertebrae come first (cranial to caudal), then discs.
    """
    seq = vertebrae_cranial_to_caudal(lumbar_count)
    seq = seq[seq.index(top):]
    n = len(seq)

    def at(k):  # k: position in vertebra units from the top
        s = k / (n - 1)
        return (0.0, -lordosis_mm * math.sin(math.pi * s), -SPACING * k)

    names = list(seq) + levels_between(seq)
    dets = [SpineDetection("vertebra", at(k), is_sacrum=(name == "S1"), confidence=0.9) for k, name in enumerate(seq)]
    dets += [SpineDetection("disc", at(k + 0.5), confidence=0.9) for k in range(n - 1)]
    return names, dets


def named(labelling, count):
    return [labelling.name_of(i) for i in range(count)]


def test_a_standard_lumbar_spine_is_named_from_the_sacrum_up():
    truth, dets = spine()
    r = label_levels(dets)
    assert named(r, len(dets)) == truth
    assert [d.name for d in r.discs] == ["T12-L1", "L1-L2", "L2-L3", "L3-L4", "L4-L5", "L5-S1"]
    assert [v.name for v in r.vertebrae] == ["T12", "L1", "L2", "L3", "L4", "L5", "S1"]
    assert r.vertebral_spacing_mm == pytest.approx(SPACING, rel=0.1)
    assert r.warnings == () and r.dropped == ()


@pytest.mark.parametrize("count, bottom", [(4, "L4-S1"), (6, "L6-S1")])
def test_four_or_six_lumbar_vertebrae(count, bottom):
    truth, dets = spine(lumbar_count=count)
    r = label_levels(dets, lumbar_count=count)
    assert named(r, len(dets)) == truth
    assert r.discs[-1].name == bottom
    assert r.discs[0].name == "T12-L1"


def test_a_missed_disc_is_placed_midway_and_flagged():
    truth, dets = spine()
    missing = truth.index("L3-L4")
    r = label_levels([d for i, d in enumerate(dets) if i != missing])
    disc = next(d for d in r.discs if d.name == "L3-L4")
    assert not disc.detected
    l3, l4 = (np.array(v.centroid) for v in r.vertebrae if v.name in ("L3", "L4"))
    assert disc.centroid == pytest.approx(tuple((l3 + l4) / 2))
    assert [d.name for d in r.discs] == ["T12-L1", "L1-L2", "L2-L3", "L3-L4", "L4-L5", "L5-S1"]
    assert any("no disc detected between L3 and L4" in w for w in r.warnings)


def test_a_missed_vertebra_leaves_the_names_above_it_right():
    truth, dets = spine()
    missing = truth.index("L3")
    kept = [i for i in range(len(dets)) if i != missing]
    r = label_levels([dets[i] for i in kept])
    assert [r.name_of(j) for j in range(len(kept))] == [truth[i] for i in kept]
    assert any("L3" in w for w in r.warnings)


def test_a_detection_off_the_spine_line_is_dropped_with_a_warning():
    truth, dets = spine()
    stray = SpineDetection("vertebra", (90.0, 0.0, -3 * SPACING), confidence=0.95)  # beside L2, 90 mm lateral
    r = label_levels(dets + [stray])
    assert r.dropped == (len(dets),)
    assert named(r, len(dets)) == truth
    assert any("off the spine line" in w for w in r.warnings)


@pytest.mark.parametrize("confidence, kept_name_of_duplicate", [(0.3, None), (0.95, "L4-L5")])
def test_of_two_overlapping_detections_the_more_confident_is_kept(confidence, kept_name_of_duplicate):
    truth, dets = spine()
    original = truth.index("L4-L5")
    x, y, z = dets[original].centroid
    duplicate = SpineDetection("disc", (x, y, z + 3.0), confidence=confidence)
    r = label_levels(dets + [duplicate])
    assert r.name_of(len(dets)) == kept_name_of_duplicate
    assert r.name_of(original) == (None if kept_name_of_duplicate else "L4-L5")
    assert [d.name for d in r.discs].count("L4-L5") == 1
    assert any("overlaps" in w for w in r.warnings)


def test_a_detection_caudal_to_the_sacrum_is_dropped():
    truth, dets = spine()
    coccyx = SpineDetection("vertebra", (0.0, 0.0, -8 * SPACING))
    r = label_levels(dets + [coccyx])
    assert r.name_of(len(dets)) is None
    assert any("caudal to the sacrum" in w for w in r.warnings)


def test_vertebrae_above_t11_are_not_named():
    truth, dets = spine(top="T11")
    higher = [SpineDetection("vertebra", (0.0, 0.0, SPACING)), SpineDetection("disc", (0.0, 0.0, SPACING / 2))]
    r = label_levels(dets + higher)
    assert named(r, len(dets)) == truth
    assert r.name_of(len(dets)) is None and r.name_of(len(dets) + 1) is None
    assert any("cranial to T11" in w for w in r.warnings)


def test_only_the_sacrum_gives_no_levels():
    r = label_levels([SpineDetection("vertebra", (0, 0, 0), is_sacrum=True)])
    assert r.discs == () and r.name_of(0) == "S1"


def test_of_two_sacra_the_more_confident_is_kept():
    truth, dets = spine()
    false_sacrum = SpineDetection("vertebra", dets[truth.index("L5")].centroid, is_sacrum=True, confidence=0.2)
    r = label_levels(dets + [false_sacrum])
    assert named(r, len(dets)) == truth
    assert any("second sacrum" in w for w in r.warnings)


def test_a_sacrum_at_the_top_of_the_image_is_warned_about():
    _, dets = spine()
    flipped = [SpineDetection(d.kind, (d.centroid[0], d.centroid[1], -d.centroid[2]), d.is_sacrum) for d in dets]
    assert any("cranial (LPS +z)" in w for w in label_levels(flipped).warnings)


def test_detections_from_boxes_and_masks():
    box = SpineDetection.from_box("disc", (-20, -10, -4), (20, 10, 4))
    assert box.centroid == (0.0, 0.0, 0.0)
    mask = np.zeros((4, 4, 4), dtype=bool)
    mask[1:3, 1:3, 2] = True  # voxel centres (1-2, 1-2, 2) at 2 mm spacing
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    assert SpineDetection.from_mask("vertebra", mask, affine).centroid == (3.0, 3.0, 4.0)
    with pytest.raises(ValueError, match="vertebra mask is empty"):
        SpineDetection.from_mask("vertebra", np.zeros((2, 2, 2), bool), affine)


def test_levels_are_findings_levels_with_their_disc_centres():
    truth, dets = spine()
    levels = label_levels(dets).levels()
    assert [lv.name for lv in levels][-1] == "L5-S1"
    assert levels[-1].disc_center == dets[truth.index("L5-S1")].centroid


# ---- invariance --------------------------------------------------------------------------------

@PROPERTY_SETTINGS
@given(order=st.permutations(range(13)), t=similarities(), lordosis=st.floats(0.0, 30.0))
def test_names_do_not_change_under_reordering_rotation_translation_or_scaling(order, t, lordosis):
    truth, dets = spine(lordosis_mm=lordosis)
    moved = [SpineDetection(dets[i].kind, tuple(t(dets[i].centroid)), dets[i].is_sacrum) for i in order]
    r = label_levels(moved)
    assert [r.name_of(j) for j in range(len(order))] == [truth[i] for i in order]


@PROPERTY_SETTINGS
@given(missing=st.integers(0, 12))
def test_any_single_missed_detection_but_the_sacrum_keeps_the_other_names(missing):
    truth, dets = spine()
    if dets[missing].is_sacrum:
        return
    kept = [i for i in range(len(dets)) if i != missing]
    r = label_levels([dets[i] for i in kept])
    assert [r.name_of(j) for j in range(len(kept))] == [truth[i] for i in kept]


# ---- bad input ---------------------------------------------------------------------------------

def test_no_sacrum_is_refused():
    _, dets = spine()
    with pytest.raises(ValueError, match="is_sacrum"):
        label_levels([d for d in dets if not d.is_sacrum])


def test_a_disc_cannot_be_the_sacrum():
    with pytest.raises(ValueError, match="is_sacrum applies to a vertebra"):
        SpineDetection("disc", (0, 0, 0), is_sacrum=True)


def test_nan_centroid_is_refused_by_name():
    with pytest.raises(ValueError, match="disc centroid.*non-finite"):
        SpineDetection("disc", (0.0, float("nan"), 0.0))


def test_unknown_kind_is_refused():
    with pytest.raises(ValueError, match="'vertebra' or 'disc'"):
        SpineDetection("pedicle", (0, 0, 0))


def test_detections_must_be_spine_detections():
    with pytest.raises(TypeError, match=r"detections\[0\] must be a SpineDetection"):
        label_levels([(0, 0, 0)])


def test_detections_stacked_at_one_place_are_refused():
    with pytest.raises(ValueError, match="one place along the spine"):
        label_levels([SpineDetection("vertebra", (0, 0, 0), is_sacrum=True), SpineDetection("disc", (0, 0, 0))])


def test_lumbar_count_must_be_4_5_or_6():
    _, dets = spine()
    with pytest.raises(ValueError, match="lumbar vertebra count must be 4, 5 or 6"):
        label_levels(dets, lumbar_count=3)


# ---- relabel -----------------------------------------------------------------------------------

def _graded_levels():
    levels = label_levels(spine()[1]).levels()
    for i, lv in enumerate(levels):
        lv.pfirrmann.model = PfirrmannGrade(1 + i % 5)
    levels[-1].ldh.model = MSUGrade(2, "AB", "right")
    return levels


def test_shifting_labels_up_one_moves_every_finding_with_its_disc():
    levels = _graded_levels()
    before = {lv.disc_center: (lv.name, lv.pfirrmann.value, lv.ldh.value) for lv in levels}
    corrections = relabel_levels(levels, shift=1, reader="dr.lee", note="L5 sacralised")
    assert [lv.name for lv in levels] == ["T11-T12", "T12-L1", "L1-L2", "L2-L3", "L3-L4", "L4-L5"]
    for lv in levels:  # same disc, same findings, new name; the model's name is kept
        old_name, pfirrmann, ldh = before[lv.disc_center]
        assert (lv.model_name, lv.pfirrmann.value, lv.ldh.value) == (old_name, pfirrmann, ldh)
    assert len(corrections) == 6
    assert (corrections[-1].finding, corrections[-1].old, corrections[-1].new) == ("level", "L5-S1", "L4-L5")
    assert levels[-1].corrections[-1].reader == "dr.lee"
    moved = Assessment("1.2.3", levels=levels)
    assert moved.level("L4-L5").ldh.value.label == "2-AB right"
    assert Assessment.from_json(moved.to_json()).level("L4-L5").model_name == "L5-S1"


def test_shifting_down_one_and_back_restores_the_names():
    levels = _graded_levels()[1:]  # L1-L2 ... L5-S1 cannot go lower; drop T12-L1 first
    with pytest.raises(ValueError, match="cannot shift L5-S1 1 level\\(s\\) down"):
        relabel_levels(levels, shift=-1, reader="dr.lee")
    assert levels[-1].name == "L5-S1" and levels[-1].corrections == []  # nothing half-renamed
    relabel_levels(levels, shift=1, reader="dr.lee")
    relabel_levels(levels, shift=-1, reader="dr.lee")
    assert [lv.name for lv in levels] == ["L1-L2", "L2-L3", "L3-L4", "L4-L5", "L5-S1"]


def test_relabel_takes_an_assessment():
    a = Assessment("1.2.3", levels=[Level("L4-L5"), Level("L5-S1")])
    relabel_levels(a, shift=1, reader="dr.lee")
    assert [lv.name for lv in a.levels] == ["L3-L4", "L4-L5"]


def test_recounting_six_lumbar_vertebrae_keeps_each_disc_counted_from_the_sacrum():
    levels = _graded_levels()
    recount_lumbar_levels(levels, lumbar_count=6, reader="dr.lee")
    assert [lv.name for lv in levels] == ["L1-L2", "L2-L3", "L3-L4", "L4-L5", "L5-L6", "L6-S1"]
    recount_lumbar_levels(levels, lumbar_count=4, reader="dr.lee")
    assert [lv.name for lv in levels] == ["T11-T12", "T12-L1", "L1-L2", "L2-L3", "L3-L4", "L4-S1"]


def test_a_transitional_name_is_shifted_in_its_own_anatomy():
    levels = [Level("L5-L6"), Level("L6-S1")]
    relabel_levels(levels, shift=1, reader="dr.lee")
    assert [lv.name for lv in levels] == ["L4-L5", "L5-L6"]


def test_relabel_refuses_a_fractional_shift_and_a_foreign_name():
    with pytest.raises(TypeError, match="shift must be a whole number"):
        relabel_levels([Level("L4-L5")], shift=0.5, reader="dr.lee")
    with pytest.raises(ValueError, match="'L5-S1' is not a disc between consecutive vertebrae"):
        relabel_levels([Level("L5-S1")], shift=1, reader="dr.lee", lumbar_count=6)


@pytest.mark.parametrize("confidence", [1.5, float("nan"), "high"])
def test_confidence_must_be_between_0_and_1(confidence):
    with pytest.raises(ValueError, match="confidence must be a number between 0 and 1"):
        SpineDetection("disc", (0, 0, 0), confidence=confidence)


def test_a_steep_lumbosacral_disc_close_to_the_sacrum_box_centre_is_l5_s1():
    # a steep L5-S1 sits on the sacrum: along the spine its centroid is only 6 mm above the centre of
    # the S1 box (a quarter spacing is 9 mm), yet it is the disc between L5 and S1, not an overlap
    truth, dets = spine(lordosis_mm=0.0)
    lumbosacral = len(truth) - 1                       # the last disc: L5-S1
    x, y, z = dets[truth.index("S1")].centroid
    dets[lumbosacral] = SpineDetection("disc", (x, y, z + 6.0), confidence=0.9)
    r = label_levels(dets)
    assert r.name_of(lumbosacral) == "L5-S1" and lumbosacral not in r.dropped
    assert not any("midway" in w for w in r.warnings)
    # a disc caudal to the sacrum's centre is still dropped
    dets[lumbosacral] = SpineDetection("disc", (x, y, z - 6.0), confidence=0.9)
    assert lumbosacral in label_levels(dets).dropped
