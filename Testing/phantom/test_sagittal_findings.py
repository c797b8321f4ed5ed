"""The phantom's sagittal findings of schema 2: Modic change, endplate defects, disc narrowing,
bulging, herniation seen on the sagittal view and the canal's AP diameter. Each is drawn where the
truth says it is (label map and image), the truth validates, and a stenosis asked for is drawn to
the diameter asked for."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from SpineAssistLib.anatomy import HERNIATION_LABEL, NEURAL_LABEL, THECAL_SAC_LABEL
from SpineAssistLib.findings import (SAGITTAL_GRADING_KINDS, Assessment, CanalDiameter, ModicType, MSUGrade, Presence,
                                     validate_findings_json)
from SpineAssistLib.geometry import world_to_index
from SpineAssistLib.phantom import generate_study, sample_params, write_study
from SpineAssistLib.phantom.acquisition import Scanner, sagittal_planes
from SpineAssistLib.phantom.params import NARROWED_HEIGHT_LOSS, PhantomParams
from SpineAssistLib.phantom.spine import build_spine
from SpineAssistLib.phantom.tissues import TissueModel

SEED = 11
ALL = ("T11-T12", "T12-L1", "L1-L2", "L2-L3", "L3-L4", "L4-L5", "L5-S1")
FINDINGS = dict(
    lumbar_count=5,
    pfirrmann={"L1-L2": 2, "L2-L3": 4, "L3-L4": 3, "L4-L5": 4, "L5-S1": 5},
    msu={"L1-L2": MSUGrade(0, bulge=True), "L2-L3": MSUGrade(0), "L3-L4": MSUGrade(2, "B", "left"),
         "L4-L5": MSUGrade(0), "L5-S1": MSUGrade(2, "A")},
    slip_percent={lv: 0.0 for lv in ALL},
    modic={"T11-T12": 0, "T12-L1": 0, "L1-L2": 1, "L2-L3": 2, "L3-L4": 0, "L4-L5": 3, "L5-S1": 0},
    endplate_upper={lv: lv == "L1-L2" for lv in ALL},            # the notch in L1's inferior endplate
    endplate_lower={lv: lv == "L2-L3" for lv in ALL},            # the notch in L3's superior endplate
    narrowing={"L3-L4": True},                                   # a grade III disc narrowed
    canal_ap_mm={**{lv: None for lv in ALL}, "L3-L4": 11.0, "L4-L5": 8.5},
)
TYPES = {"T12-L1": 0, "L1-L2": 1, "L2-L3": 2, "L3-L4": 0, "L4-L5": 3, "L5-S1": 0}


@pytest.fixture(scope="module")
def study():
    return generate_study(SEED, sample_params(SEED, **FINDINGS))


@pytest.fixture(scope="module")
def written(study, tmp_path_factory) -> Path:
    return write_study(study, tmp_path_factory.mktemp("phantom") / "study")


def _nearest_slice(study, point) -> int:
    return int(np.argmin([abs(float((g.position - np.asarray(point)) @ g.normal)) for g in study.sagittal.slices]))


def _pixels_lps(study, k: int, mask: np.ndarray) -> np.ndarray:
    """LPS mm (n, 3) of the pixels of sagittal slice ``k`` where ``mask`` is true."""
    rows, cols = np.nonzero(mask)
    A = study.sagittal.affine()
    return (A @ np.stack([np.full_like(rows, k), rows, cols, np.ones_like(rows)]).astype(float))[:3].T


# --- truth -----------------------------------------------------------------------------------------

def test_truth_json_carries_every_sagittal_finding_assessed_and_valid(study, written):
    data = json.loads((written / "truth.json").read_text())
    validate_findings_json(data)
    truth = Assessment.from_dict(data)
    assert [lv.name for lv in truth.levels] == list(ALL[1:])
    for lv in truth.levels:
        for kind in (*SAGITTAL_GRADING_KINDS, "canal"):
            f = lv.finding(kind)
            assert f.status == "assessed" and f.model is not None and f.value == f.model, (lv.name, kind)
    got = {lv.name: lv for lv in truth.levels}
    assert {n: lv.modic.value for n, lv in got.items()} == {n: ModicType(t) for n, t in TYPES.items()}
    assert [n for n, lv in got.items() if lv.endplate_upper.value.present] == ["L1-L2"]
    assert [n for n, lv in got.items() if lv.endplate_lower.value.present] == ["L2-L3"]
    # narrowed: the grade III disc asked for, and the IV-V discs as always
    assert [n for n, lv in got.items() if lv.narrowing.value.present] == ["L2-L3", "L3-L4", "L4-L5", "L5-S1"]
    assert [n for n, lv in got.items() if lv.bulging.value.present] == ["L1-L2"]
    # the central herniation shows on the mid-sagittal slices, the zone-B one lies lateral to them
    assert [n for n, lv in got.items() if lv.herniation_sag.value.present] == ["L5-S1"]
    assert got["L5-S1"].herniation_sag.measurement("midline_depth_mm").value > 1.5
    assert got["L3-L4"].herniation_sag.measurement("midline_depth_mm").value < 1.5
    # the drawn defects and the canal line are in the finding's geometry, on the sagittal series
    notch = got["L1-L2"].endplate_upper.geometry
    assert set(notch.points) == {"endplate defect"}
    assert notch.source["series_instance_uid"] == study.uids["sagittal"]
    assert notch.source["sop_instance_uid"] in study.sop_uids["SAG"]
    for lv in truth.levels:
        a, p = lv.canal.geometry.lines["canal AP"]
        assert np.linalg.norm(np.subtract(p, a)) == pytest.approx(lv.canal.value.ap_mm, abs=1e-6)
        assert lv.canal.value == CanalDiameter.measured(lv.canal.measurement("canal_ap_mm").value)


def test_a_requested_stenosis_has_the_diameter_and_grade_asked_for(study):
    pixel = study.sagittal.slices[0].pixel_spacing[0]
    canal = {lv.name: lv.canal.value for lv in study.truth.levels}
    assert canal["L4-L5"].ap_mm == pytest.approx(8.5, abs=min(0.05, pixel / 2))
    assert canal["L4-L5"].stenosis == "absolute"
    assert canal["L3-L4"].ap_mm == pytest.approx(11.0, abs=min(0.05, pixel / 2))
    assert canal["L3-L4"].stenosis == "relative"
    assert canal["L1-L2"].ap_mm > 12.0 and canal["L1-L2"].stenosis == "none"    # not narrowed: 13 mm here
    # the sagittal label map reads the same diameter along the truth line (on the slice nearest it,
    # at most half a slice off the disc's mid-plane, where the oval sac is a little shallower)
    for level, asked in (("L4-L5", 8.5), ("L3-L4", 11.0)):
        a, p = (np.array(q) for q in study.truth.level(level).canal.geometry.lines["canal AP"])
        u = (p - a) / np.linalg.norm(p - a)
        k = _nearest_slice(study, (a + p) / 2)
        t = np.arange(-4.0, np.linalg.norm(p - a) + 4.0, 0.05)
        idx = np.rint(world_to_index(a[None, :] + t[:, None] * u[None, :], study.sagittal.affine())).astype(int)
        lab = study.sagittal.labels[k, idx[:, 1], idx[:, 2]]
        in_canal = np.isin(lab, (THECAL_SAC_LABEL, NEURAL_LABEL))
        assert in_canal.sum() * 0.05 == pytest.approx(asked, abs=1.5 * pixel), level


def test_a_stenosis_narrows_the_sac_only_at_its_disc(study):
    p = sample_params(SEED, **FINDINGS)
    narrowed = build_spine(p)
    plain = build_spine(sample_params(SEED, **{**FINDINGS, "canal_ap_mm": {lv: None for lv in ALL}}))
    assert narrowed.disc("L4-L5").canal_narrowing_mm == 0.0
    TissueModel(narrowed)                                             # the first model draws the stenoses
    assert narrowed.disc("L4-L5").canal_narrowing_mm > 2.0            # the sac's posterior wall moved forward
    assert [d.name for d in narrowed.discs if d.canal_narrowing_mm > 0] == ["L3-L4", "L4-L5"]
    g = min(sagittal_planes(narrowed), key=lambda g: abs(float((g.position - narrowed.disc("L4-L5").center) @ g.normal)))
    _, lab = Scanner(narrowed).acquire(g, p.sag_acq_fraction, p.sag_phase_fraction, 0.0)
    _, lab0 = Scanner(plain).acquire(g, p.sag_acq_fraction, p.sag_phase_fraction, 0.0)
    changed = lab != lab0
    canal, canal0 = (np.isin(x, (THECAL_SAC_LABEL, NEURAL_LABEL)) for x in (lab, lab0))
    assert (canal0 & ~canal).sum() > 50 and canal.sum() < canal0.sum()       # sac taken away ...
    assert set(np.unique(lab[changed])) <= {0, THECAL_SAC_LABEL, NEURAL_LABEL}  # ... by soft tissue; roots move along
    rows, cols = np.nonzero(changed)
    pts = np.stack([g.position + r * g.pixel_spacing[0] * g.column_direction + c * g.pixel_spacing[1] * g.row_direction
                    for r, c in zip(rows, cols)])
    lines = [np.mean(study.truth.level(lv).canal.geometry.lines["canal AP"], axis=0) for lv in ("L3-L4", "L4-L5")]
    nearest = np.min([np.linalg.norm(pts - c, axis=1) for c in lines], axis=0)
    assert nearest.max() < 20.0                          # within the narrowing and its taper about each line


def test_a_canal_cannot_be_widened_or_asked_for_out_of_range():
    with pytest.raises(ValueError, match="the canal drawn there"):
        TissueModel(build_spine(sample_params(SEED, msu={"L5-S1": MSUGrade(3, "A")}, canal_ap_mm={"L5-S1": 19.0})))
    with pytest.raises(ValueError, match="2-20 mm"):
        sample_params(SEED, canal_ap_mm={"L4-L5": 1.0})
    with pytest.raises(ValueError, match="not a disc"):
        sample_params(SEED, lumbar_count=5, canal_ap_mm={"L5-L6": 8.0})


def test_bad_sagittal_finding_choices_are_refused_with_clear_errors():
    with pytest.raises(ValueError, match="Modic type 0-3"):
        sample_params(SEED, modic={"L4-L5": 4})
    with pytest.raises(TypeError, match="true or false"):
        sample_params(SEED, endplate_upper={"L4-L5": "yes"})
    with pytest.raises(ValueError, match="Pfirrmann V"):
        sample_params(SEED, pfirrmann={"L4-L5": 5}, narrowing={"L4-L5": False})
    with pytest.raises(ValueError, match="normal by definition"):
        sample_params(SEED, pfirrmann={"L4-L5": 1}, narrowing={"L4-L5": True})
    with pytest.raises(ValueError, match="not a disc"):
        PhantomParams(lumbar_count=5, endplate_lower={"L6-S1": True}).validate()


# --- drawn where the truth says ---------------------------------------------------------------------

def _band_and_centre_means(study, v, endplate: str) -> tuple[float, float]:
    """Mean image value of vertebra v's marrow 2-3.8 mm under its ``endplate`` (inside the Modic band) and
    of its central marrow (anterior half, away from the basivertebral vein), on the slice through its centre."""
    k = _nearest_slice(study, v.center)
    mask = study.sagittal.labels[k] == v.label
    pts = _pixels_lps(study, k, mask)
    a, b, w = v.to_local(pts[:, 0], pts[:, 1], pts[:, 2])
    rho = v.rho(a, b)
    depth = (v.top(b, rho) - w) if endplate == "superior" else (w - v.bottom(b, rho))
    edge = w > v.height / 2 - 5.5 if endplate == "superior" else w < -v.height / 2 + 5.5
    band = (depth > 2.0) & (depth < 3.8) & edge & (np.abs(b) < v.half_depth - 5)
    centre = (np.abs(w) < 3.0) & (b < 0) & (b > -v.half_depth + 5)
    img = study.sagittal.images[k][mask].astype(float)
    assert band.sum() > 30 and centre.sum() > 30
    return float(img[band].mean()), float(img[centre].mean())


def test_modic_bands_differ_from_normal_marrow_as_their_type_says(study):
    for level, t in TYPES.items():
        if level == "T12-L1":
            continue
        d = study.spine.disc(level)
        for v, endplate in ((d.upper, "inferior"), (d.lower, "superior")):
            band, centre = _band_and_centre_means(study, v, endplate)
            ratio = band / centre
            if t in (1, 2):
                assert ratio > 1.15, (level, v.name, ratio)          # oedema or fat: bright on T2
            elif t == 3:
                assert ratio < 0.75, (level, v.name, ratio)          # sclerosis: dark
            else:
                assert 0.85 < ratio < 1.15, (level, v.name, ratio)


def test_an_endplate_defect_puts_disc_material_into_the_vertebra_next_to_its_disc(study):
    for level in ("L1-L2", "L2-L3", "L3-L4", "L4-L5"):
        d = study.spine.disc(level)
        lv = study.truth.level(level)
        for which, v in (("upper", d.upper), ("lower", d.lower)):
            present = lv.finding(f"endplate_{which}").value.present
            at = lv.finding(f"endplate_{which}").geometry.points["endplate defect"] if present else d.center
            k = _nearest_slice(study, at)
            mask = study.sagittal.labels[k] == d.label
            pts = _pixels_lps(study, k, mask)
            sd, _, _ = v.signed_distance(*v.to_local(pts[:, 0], pts[:, 1], pts[:, 2]))
            in_body = int((sd < -1.5).sum())          # disc-labelled pixels well inside the body's outline
            if present:
                assert in_body > 5, (level, which)
            else:
                assert in_body == 0, (level, which, in_body)


def test_an_endplate_defect_changes_the_label_map_only_next_to_its_disc():
    p = sample_params(SEED, **FINDINGS)
    without = sample_params(SEED, **{**FINDINGS, "endplate_upper": {lv: False for lv in ALL}})
    spine, plain = build_spine(p), build_spine(without)
    notch = spine.disc("L1-L2").defect_upper
    g = min(sagittal_planes(spine), key=lambda g: abs(float((g.position - notch.center(spine.vertebra("L1"))) @ g.normal)))
    _, lab = Scanner(spine).acquire(g, p.sag_acq_fraction, p.sag_phase_fraction, 0.0)
    _, lab0 = Scanner(plain).acquire(g, p.sag_acq_fraction, p.sag_phase_fraction, 0.0)
    changed = lab != lab0
    assert set(np.unique(lab0[changed])) <= {spine.vertebra("L1").label}     # vertebra ...
    assert set(np.unique(lab[changed])) == {spine.disc("L1-L2").label}       # ... became disc material
    rows, cols = np.nonzero(changed)
    pts = np.stack([g.position + r * g.pixel_spacing[0] * g.column_direction + c * g.pixel_spacing[1] * g.row_direction
                    for r, c in zip(rows, cols)])
    centre = notch.center(spine.vertebra("L1"))
    assert np.linalg.norm(pts - centre, axis=1).max() < 2 * (notch.half_width + notch.half_length + notch.depth)


def test_narrowing_is_the_drawn_height_loss_and_a_narrowed_disc_is_lower(study):
    for lv in study.truth.levels:
        loss = study.spine.disc(lv.name).height_loss
        assert lv.narrowing.value == Presence(loss >= NARROWED_HEIGHT_LOSS), lv.name
        assert lv.narrowing.measurement("height_loss").value == loss
    # the same grade III disc asked to be narrowed is lower than drawn by default (grade III: 6-16 % lost)
    narrowed = build_spine(sample_params(SEED, **FINDINGS)).disc("L3-L4")
    plain = build_spine(sample_params(SEED, **{**FINDINGS, "narrowing": {"L3-L4": False}})).disc("L3-L4")
    assert 0.2 <= narrowed.height_loss <= 0.32 and plain.height_loss <= 0.16
    assert narrowed.mid_height < 0.9 * plain.mid_height
    # and so in the label map: fewer disc pixels on the slice through the disc's centre
    areas = []
    for spine in (build_spine(sample_params(SEED, **FINDINGS)),
                  build_spine(sample_params(SEED, **{**FINDINGS, "narrowing": {"L3-L4": False}}))):
        d = spine.disc("L3-L4")
        g = min(sagittal_planes(spine), key=lambda g: abs(float((g.position - d.center) @ g.normal)))
        _, lab = Scanner(spine).acquire(g, spine.params.sag_acq_fraction, spine.params.sag_phase_fraction, 0.0)
        areas.append(int((lab == d.label).sum()))
    assert areas[0] < 0.9 * areas[1]


def test_a_bulge_and_a_central_herniation_show_on_the_mid_sagittal_labels(study):
    def beyond_disc(level: str, within_mm: float) -> int:
        d = study.spine.disc(level)
        slices = [k for k, g in enumerate(study.sagittal.slices) if abs(float((g.position - d.center) @ g.normal)) < within_mm]
        assert slices
        n = 0
        for k in slices:
            pts = _pixels_lps(study, k, study.sagittal.labels[k] == HERNIATION_LABEL)
            n += int((np.linalg.norm(pts - d.center, axis=1) < 30).sum())
        return n

    truth = {lv.name: lv for lv in study.truth.levels}
    assert truth["L1-L2"].bulging.value.present and beyond_disc("L1-L2", 3.0) > 20
    assert truth["L5-S1"].herniation_sag.value.present and beyond_disc("L5-S1", 3.0) > 20
    assert not truth["L2-L3"].bulging.value.present and beyond_disc("L2-L3", 3.0) == 0
    # the zone-B herniation lies lateral to the mid-sagittal slices (more than 5 mm off the mid-line)
    assert not truth["L3-L4"].herniation_sag.value.present and beyond_disc("L3-L4", 2.5) == 0


def test_sagittal_finding_prevalences_are_plausible():
    ps = [sample_params(s) for s in range(400)]
    lumbar = [(p, lv) for p in ps for lv in p.lumbar_levels]
    extra_modic = np.mean([p.modic.get(lv) not in (None, 0) for p, lv in lumbar])
    defect = np.mean([p.endplate_upper[lv] or p.endplate_lower[lv] for p, lv in lumbar])
    stenosis = np.mean([p.canal_ap_mm.get(lv) is not None for p, lv in lumbar])
    assert 0.05 < extra_modic < 0.16                  # with the spine's own bands about 20 % of levels
    assert 0.15 < defect < 0.35
    assert 0.01 < stenosis < 0.08
    assert all(p.narrowing[lv] == (p.pfirrmann[lv] >= 4) for p in ps for lv in p.levels)
    assert {p.modic[lv] for p, lv in lumbar if lv in p.modic} == {1, 2, 3}


def test_drawn_stenoses_are_always_reachable():
    for s in range(60):
        p = sample_params(s)
        if any(v is not None for v in p.canal_ap_mm.values()):
            spine = build_spine(p)
            TissueModel(spine)                        # raises if a drawn diameter cannot be drawn
            assert all(spine.disc(lv).canal_narrowing_mm > 0 for lv, v in p.canal_ap_mm.items() if v is not None)


# --- the oracle answers of the two sagittal models --------------------------------------------------

def test_oracle_truth_disc_grades_and_canal_mask(study, written):
    from support.oracle_models import truth_canal_mask, truth_disc_grades

    grades = truth_disc_grades(written)
    assert set(grades) == set(ALL[1:])
    assert grades["L4-L5"]["modic"] == ModicType(3) and grades["L1-L2"]["bulging"] == Presence(True)
    assert grades["L5-S1"]["herniation_sag"] == Presence(True) and grades["L2-L3"]["pfirrmann"].grade == 4
    assert set(grades["L3-L4"]) == {"pfirrmann", *SAGITTAL_GRADING_KINDS}
    k = _nearest_slice(study, study.spine.disc("L4-L5").center)
    mask = truth_canal_mask(written, k)
    assert mask.dtype == bool and mask.shape == study.sagittal.labels.shape[1:]
    np.testing.assert_array_equal(mask, np.isin(study.sagittal.labels[k], (THECAL_SAC_LABEL, NEURAL_LABEL)))
    with pytest.raises(IndexError, match="outside"):
        truth_canal_mask(written, study.sagittal.labels.shape[0])
