"""report.html: self-contained, says what a reader needs, and its key images put geometry on the right pixels."""

import base64
import io
import re
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from SpineAssistLib.export.key_images import Box, KeyImage, depth_line, render_key_image
from SpineAssistLib.export.report_html import DISCLAIMER, write_report_html

from support import export_case as S

SVG = "{http://www.w3.org/2000/svg}"


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    sag = sorted(S.sagittal_series(), key=lambda d: float(d.ImagePositionPatient[0]))
    ax = S.axial_series()
    a = S.assessment(ax[1].SOPInstanceUID, sag[2].SOPInstanceUID)
    images = [KeyImage.from_dicom(sag[2], "sagittal", mask=S.disc_labels()[2], boxes=[Box("L4", 32, 17, 52, 52, 0.93)]),
              KeyImage.from_dicom(ax[1], "axial", level="L4-L5", mask=S.herniation_mask())]
    path = write_report_html(a, tmp_path_factory.mktemp("report") / "report.html", images)
    return path.read_text(encoding="utf-8")


def test_report_is_self_contained(report):
    # Nothing is fetched: no external scripts, stylesheets, fonts or images.
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//|file:)""", report)
    assert "<script" not in report and "@import" not in report and "url(" not in report
    assert len(re.findall(r'<image [^>]*href="data:image/png;base64,iVBORw0KGgo[A-Za-z0-9+/=]{100,}"', report)) == 2


def test_report_states_study_versions_and_disclaimer(report):
    assert S.STUDY_UID in report
    assert "SpineAssist 0." in report and "sagittal_pose" in report
    assert DISCLAIMER in report
    assert "not validated for clinical use" in report and "axial models on synthetic data only" in report


def test_report_table_marks_corrections_and_not_assessed(report):
    row = re.search(r"<tr><td><b>L4-L5</b>.*?</tr>", report).group(0)
    assert "2-AB right" in row
    assert "IV" in row and "corrected" in row and "model: III" in row
    assert "I antero, slip 14.3 %" in row
    l5s1 = re.search(r"<tr><td><b>L5-S1</b>.*?</tr>", report).group(0)
    assert "not assessed" in l5s1 and "no axial slice through this disc" in l5s1
    assert S.PATIENT_NAME not in report and "MRN-000123" not in report


def test_report_says_which_series_each_grade_came_from(report):
    row = re.search(r"<tr><td><b>L4-L5</b>.*?</tr>", report).group(0)
    ldh, pfirrmann, listhesis = re.findall(r"<td>(.*?)</td>", row)[1:4]
    assert ldh.startswith('2-AB right<span class="view" title="graded on the axial series">axial</span>')
    assert '>sagittal</span>' in pfirrmann and '>sagittal</span>' in listhesis


def test_without_an_axial_slice_the_herniation_column_shows_the_sagittal_reading(report):
    l5s1 = re.search(r"<tr><td><b>L5-S1</b>.*?</tr>", report).group(0)
    herniation = re.findall(r"<td>(.*?)</td>", l5s1)[1]
    assert herniation.startswith('herniation<span class="view" title="graded on the sagittal series">sagittal</span>')
    assert "MSU grade not assessed: no axial slice through this disc" in herniation


def _other_rows(report):
    table = re.search(r'<table class="levels other">(.*?)</table>', report).group(1)
    return {re.search(r"<b>(.*?)</b>", r).group(1): re.findall(r"<td>(.*?)</td>", r)[1:]
            for r in re.findall(r"<tr><td>.*?</tr>", table)}


def test_other_sagittal_findings_table_has_values_corrections_and_not_graded(report):
    heads = re.findall(r"<th>(.*?)</th>", re.search(r'<table class="levels other">(.*?)</tr>', report).group(1))
    assert heads == ["Level", "Modic", "Upper endplate defect", "Lower endplate defect", "Disc narrowing",
                     "Disc bulging", "Herniation (sagittal)", "Canal AP"]
    rows = _other_rows(report)
    modic, upper, lower, narrowing, bulging, herniation, canal = rows["L4-L5"]
    assert modic.startswith("Modic 1") and "corrected" in modic and "model: Modic 2" in modic
    assert (upper, lower, narrowing, herniation) == ("yes", "no", "yes", "yes")
    assert bulging.startswith("no") and "model: yes" in bulging
    assert canal.startswith("9.2 mm, relative stenosis") and "model: 9.2 mm, absolute stenosis" in canal
    assert set(rows["L3-L4"]) == {'<span class="na">not graded</span>'}
    assert "Other sagittal findings" in report and "absolute stenosis below 10 mm, relative from 10 to 12 mm" in report
    # the corrections log names the findings and their values as the tables do
    assert "<td>Modic</td><td>dr.lee</td><td>Modic 2 → Modic 1</td>" in report
    assert "<td>canal AP</td><td>dr.lee</td><td>9.2 mm, absolute stenosis → 9.2 mm, relative stenosis</td>" in report


def test_a_study_without_the_sagittal_gradings_says_so_in_one_line():
    from SpineAssistLib.export.report_html import render_report_html
    from SpineAssistLib.findings import Assessment, Level

    html = render_report_html(Assessment(S.STUDY_UID, [Level("L4-L5")]))
    assert '<table class="levels other">' not in html
    assert "were not graded in this assessment" in html


def test_sagittal_key_image_draws_the_canal_ap_line_with_its_length():
    from SpineAssistLib.export.key_images import render_key_image_parts

    sag = sorted(S.sagittal_series(), key=lambda d: float(d.ImagePositionPatient[0]))[2]
    img = KeyImage.from_dicom(sag, "sagittal", mask=S.disc_labels()[2])
    svg, legend = render_key_image_parts(img, S.assessment())
    assert "canal AP diameter" in {e.label for e in legend}
    texts = ["".join(t.itertext()) for t in ET.fromstring(svg).iter(f"{SVG}text")]
    assert "9.2 mm" in texts
    # the line from column 57 to 66.2 at the disc's middle row (56): pixel centres, 5 display units a pixel
    lines = [ln for ln in ET.fromstring(svg).iter(f"{SVG}polyline") if ln.get("stroke") == "#76ff03"]
    assert len(lines) == 1
    (x1, y1), (x2, y2) = (tuple(map(float, p.split(","))) for p in lines[0].get("points").split())
    assert (x2 - x1, y2 - y1) == pytest.approx((9.2 * 480 / 96, 0.0), abs=0.06)


def test_each_key_image_has_its_legend_beside_it(report):
    """The legend is HTML under each image: what each colour and line style means."""
    legends = re.findall(r'<div class="legend">(.*?)</div>', report)
    assert len(legends) == 2
    sagittal, axial = legends
    assert "disc segmentation" in sagittal and "detection box" in sagittal and "herniation" not in sagittal
    assert "herniation outline" in axial and 'stroke="#ff0000"' in axial          # drawn in red, said in red
    assert "stroke-dasharray" in sagittal                                          # the dashed detection box


def test_key_image_parts_name_what_the_image_draws():
    from SpineAssistLib.export.key_images import render_key_image_parts

    ax = S.axial_series()[1]
    svg, legend = render_key_image_parts(KeyImage.from_dicom(ax, "axial", level="L4-L5", mask=S.herniation_mask()),
                                         S.assessment(ax.SOPInstanceUID))
    root = ET.fromstring(svg)                                   # well-formed XML, an SVG element
    assert root.tag == f"{SVG}svg" and root.find(f"{SVG}image") is not None
    assert 'stroke="#ff0000"' in svg                           # the herniation outline is drawn in red
    labels = {e.label: e for e in legend}
    assert labels["herniation outline"].color == "#ff0000" and labels["herniation outline"].linestyle == "-"
    assert labels["quarter points (zone borders)"].marker == "D" and labels["quarter points (zone borders)"].linestyle == ""


def test_key_image_maps_lps_to_pixels_like_dicom():
    # 3-4-5: a point 3 mm along the rows and 4 mm down the columns of a 0.5 x 2 mm grid.
    img = KeyImage(np.zeros((10, 10)), origin=(10.0, 20.0, 30.0), row_direction=(0, 1, 0),
                   column_direction=(0, 0, -1), spacing=(0.5, 2.0))
    col, row = img.lps_to_pixel([(10.0, 23.0, 26.0)])[0]
    assert (col, row) == pytest.approx((1.5, 8.0))
    # A point 7 mm off the plane projects onto the same pixel.
    assert img.lps_to_pixel([(17.0, 23.0, 26.0)])[0] == pytest.approx((1.5, 8.0))
    assert img.distance_from_plane((17.0, 23.0, 26.0)) == pytest.approx(-7.0)


def test_key_image_from_volume_uses_the_affine():
    affine = np.array([[0, 0, 2.0, -4], [1.0, 0, 0, -48], [0, -1.0, 0, 48], [0, 0, 0, 1]])
    vol = np.zeros((5, 96, 96))
    img = KeyImage.from_volume(vol, affine, k=2, plane="sagittal", labels=S.disc_labels())
    assert img.origin == pytest.approx(S.sag_lps(0, 0, 2))
    assert img.lps_to_pixel([S.sag_lps(53, 22)])[0] == pytest.approx((22, 53))
    assert img.mask is not None and img.mask.max() > 0


def test_depth_line_is_perpendicular_to_the_intra_facet_line():
    a = S.assessment()
    foot, apex = depth_line(a.level("L4-L5").ldh.geometry)
    # The intra-facet line runs along x; the depth is the y distance from the disc margin (row 57) to the apex (row 62).
    assert apex[1] - foot[1] == pytest.approx(5.0) and foot[0] == pytest.approx(apex[0])


def test_render_returns_a_standalone_svg_with_title_and_legend():
    sag = sorted(S.sagittal_series(), key=lambda d: float(d.ImagePositionPatient[0]))[2]
    svg = render_key_image(KeyImage.from_dicom(sag, "sagittal", mask=S.disc_labels()[2], title="mid"), S.assessment())
    root = ET.fromstring(svg)
    texts = ["".join(t.itertext()) for t in root.iter(f"{SVG}text")]
    assert texts[0] == "mid" and "disc segmentation" in texts and "L4-L5" in texts


def _embedded_png(svg: str) -> np.ndarray:
    from PIL import Image

    href = ET.fromstring(svg).find(f"{SVG}image").get("href")
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(href.split(",", 1)[1]))))


def test_embedded_slice_is_the_windowed_slice_pixel_for_pixel():
    """The PNG in the SVG (read back by Pillow) holds the slice itself, one PNG pixel per slice pixel,
    windowed from its 1st to its 99.5th percentile."""
    from SpineAssistLib.export.key_images import grey_png, window_to_uint8

    rng = np.random.default_rng(0)
    px = rng.normal(500, 100, (37, 53))
    img = KeyImage(px, origin=(0, 0, 0), row_direction=(0, 1, 0), column_direction=(0, 0, -1), spacing=(1.0, 0.5))
    got = _embedded_png(render_key_image(img, S.assessment()))
    lo, hi = np.percentile(px, [1, 99.5])
    assert got.shape == (37, 53) and got.dtype == np.uint8
    np.testing.assert_array_equal(got, np.clip(np.round((px - lo) / (hi - lo) * 255), 0, 255).astype(np.uint8))
    flat = np.full((3, 4), 7.0)                                  # no contrast: no division by zero
    assert window_to_uint8(flat).max() <= 1
    assert grey_png(np.zeros((2, 2), np.uint8))[:8] == b"\x89PNG\r\n\x1a\n"


def test_outline_follows_the_pixel_edges_of_the_mask():
    from SpineAssistLib.export.key_images import outline_path

    m = np.zeros((6, 8), bool)
    m[1:3, 2:5] = True          # a 2 x 3 block at rows 1-2, columns 2-4
    m[3, 2] = True              # and one pixel below its left end: an L
    d = outline_path(m)
    horizontal = sorted(tuple(map(float, t)) for t in re.findall(r"M([\d.]+) ([\d.]+)H([\d.]+)", d))
    vertical = sorted(tuple(map(float, t)) for t in re.findall(r"M([\d.]+) ([\d.]+)V([\d.]+)", d))
    assert horizontal == [(2, 1, 5), (2, 4, 3), (3, 3, 5)]       # (x0, y, x1): top, bottom of the foot, step
    assert vertical == [(2, 1, 4), (3, 3, 4), (5, 1, 3)]         # (x, y0, y1)
    # scaled into display units (an anisotropic pixel) and shifted below a title band
    assert "M4 10H10" in outline_path(m, sx=2.0, sy=3.0, top=7.0)
    assert outline_path(np.zeros((4, 4), bool)) == ""


def test_keypoints_are_drawn_on_their_pixel_with_anisotropic_spacing():
    """A point is drawn at its pixel centre whatever the pixel's shape: (col + 0.5) sx, (row + 0.5) sy."""
    from SpineAssistLib.findings import Geometry

    a = S.assessment()
    lv = a.level("L4-L5")
    img = KeyImage(np.zeros((40, 60)), origin=(0, 0, 0), row_direction=(1, 0, 0), column_direction=(0, 1, 0),
                   spacing=(2.0, 1.0), plane="axial", level="L4-L5")
    lv.ldh.geometry = Geometry(points={"posterior canal": (30.0, 50.0, 0.0)})  # col 30, row 25
    svg = render_key_image(img, a, width_px=480)
    sx = 480 / 60
    circles = ET.fromstring(svg).findall(f"{SVG}circle")
    centres = [(float(c.get("cx")), float(c.get("cy"))) for c in circles if c.get("r") != "3.5"]  # not the legend's
    assert centres == [pytest.approx((30.5 * sx, 25.5 * 2 * sx + 24.0), abs=0.06)]   # 24: the title band


@pytest.mark.parametrize("kwargs, message", [
    (dict(pixels=np.zeros(5)), "2D array"),
    (dict(mask=np.zeros((3, 3))), "mask shape"),
    (dict(row_direction=(0, 0, 0)), "zero vector"),
    (dict(column_direction=(0, 1, 0.5)), "perpendicular"),
    (dict(spacing=(1.0, 0.0)), "two positive mm values"),
    (dict(plane="oblique"), "plane must be one of"),
])
def test_key_image_rejects_bad_input_clearly(kwargs, message):
    args = dict(pixels=np.zeros((4, 4)), origin=(0, 0, 0), row_direction=(0, 1, 0), column_direction=(0, 0, -1),
                spacing=(1.0, 1.0))
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        KeyImage(**args)


def test_box_rejects_inverted_corners():
    with pytest.raises(ValueError, match="row_max > row_min"):
        Box("L4", 10, 5, 2, 8)


def test_msu_labels_point_away_from_the_intra_facet_line():
    from SpineAssistLib.export.key_images import msu_label_layout

    # radiological view: the patient's right facet on the image left; rows run downwards
    layout = msu_label_layout({"right medial facet": (40, 100), "left medial facet": (80, 100),
                               "posterior disc margin": (60, 80), "posterior canal": (60, 108),
                               "herniation apex": (62, 92), "quarter point left": (70, 100)})
    assert set(layout) == {"right medial facet", "left medial facet", "posterior disc margin", "posterior canal",
                           "herniation apex"}                          # derived points get no text
    text, offset, ha, va = layout["right medial facet"]
    assert text == "R facet" and offset == (-7.0, -0.0) and ha == "right"
    assert layout["left medial facet"][1:] == ((7.0, -0.0), "left", "center")
    assert layout["posterior disc margin"][2:] == ("center", "bottom") and layout["posterior disc margin"][1][1] > 0
    assert layout["posterior canal"][2:] == ("center", "top") and layout["posterior canal"][1][1] < 0
    assert layout["herniation apex"][0] == "apex" and layout["herniation apex"][2] == "left"
    assert msu_label_layout({}) == {}


def test_report_says_when_the_study_needs_review(tmp_path):
    sag = sorted(S.sagittal_series(), key=lambda d: float(d.ImagePositionPatient[0]))
    ax = S.axial_series()
    a = S.assessment(ax[1].SOPInstanceUID, sag[2].SOPInstanceUID)
    assert "Needs review" not in write_report_html(a, tmp_path / "a.html").read_text(encoding="utf-8")
    a.review_reasons = ["levels found or named with low confidence: L4-L5 (0.31)"]
    a.levels[0].confidence = 0.31
    html = write_report_html(a, tmp_path / "b.html").read_text(encoding="utf-8")
    assert re.search(r'<div class="review"><b>Needs review.</b> Look closely at: levels found or named with low '
                     r'confidence: L4-L5 \(0\.31\)</div>', html)
    assert "confidence 0.31" in html


def test_the_gradings_table_says_how_the_bundled_weights_did_on_held_out_patients(report):
    """The figures come from the manifest, for the very weights the assessment used."""
    from SpineAssistLib.export.report_html import render_report_html
    from SpineAssistLib.findings import ModelInfo
    from SpineAssistLib.models.registry import load_manifest

    # the fixture's models are not the bundled disc-grades weights: no figures claimed
    assert "no held-out figures are on record for the disc-grades weights" in report
    spec = load_manifest()["sag_disc_grades"]
    g = spec.real_metrics["disc_gradings"]
    a = S.assessment()
    a.models = [*a.models, ModelInfo("sag_disc_grades", spec.sha256)]
    bundled = a
    html = render_report_html(bundled)
    note = re.search(r"<b>How far to trust these:</b>([^<]*)</p>", html).group(1)
    assert f"on {spec.real_metrics['patients']} held-out patients" in note
    for key, label in (("endplate_upper", "upper endplate defect"), ("narrowing", "disc narrowing"),
                       ("bulging", "disc bulging")):
        assert f"{label} {g[key]['balanced_accuracy']['value']:.2f}" in note
    assert f"Modic type accuracy {g['modic']['type_accuracy']['value']:.2f}" in note
    # other weights under the same name (a site's retrained model): the bundled figures are not theirs
    a.models = [ModelInfo("sag_disc_grades", "0" * 64)]
    assert "no held-out figures are on record" in render_report_html(a)
