"""report.html: one self-contained file (no external CSS, scripts, fonts or images) that opens offline.

It holds the study UID, software and model versions, the research-use disclaimer, a per-level table
(MSU herniation, Pfirrmann, Meyerding with slip %) in which reader-corrected values are marked
with the model's value beside them, not-assessed findings show their reason and each grade says
the series it was read on (sagittal or axial; without an axial series the herniation column shows
what the sagittal series showed), a second table of the other sagittal findings (Modic, endplate
defects, disc narrowing and bulging, herniation on the sagittal view, canal AP diameter), the key images
with overlays (inline SVG: the slice as an embedded base64 PNG, the outlines, lines, keypoints and
their labels drawn as vectors on top), and the corrections log. No patient name or ID
is written: the study is named by its Study Instance UID only.

Usage::

    from SpineAssistLib.export.report_html import write_report_html
    from SpineAssistLib.export.key_images import KeyImage
    write_report_html(assessment, "out/report.html",
                      images=[KeyImage.from_volume(sag, sag_affine, k=mid, plane="sagittal", labels=discs)])
"""

from __future__ import annotations

import html
import os
from pathlib import Path
from typing import Any, Sequence

from SpineAssistLib.export.atomic import atomic_write
from SpineAssistLib.export.codes import key_measurement, slip_percent
from SpineAssistLib.export.key_images import KeyImage, LegendEntry, legend_swatch, render_key_image_parts
from SpineAssistLib.findings import (
    FINDING_KINDS,
    FINDING_TITLES,
    NOT_GRADED,
    SAGITTAL_GRADING_KINDS,
    Assessment,
    Finding,
    Level,
    value_type_of,
)
from SpineAssistLib.models.registry import held_out_figures

DISCLAIMER = ("Research use only. SpineAssist is not validated for clinical use: its sagittal models were "
              "developed on 29 patients of a public research set (SPIDER) and on synthetic data, its axial models "
              "on synthetic data only. Every finding must be checked by a qualified reader.")

_CSS = """
body{font-family:-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;margin:24px auto;max-width:1100px;color:#1b1b1b;line-height:1.4}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:26px 0 8px;border-bottom:1px solid #ccc;padding-bottom:3px}
.meta{font-size:13px;color:#444}.meta td{padding:1px 10px 1px 0}.mono{font-family:Menlo,Consolas,monospace;font-size:12px}
.disclaimer{background:#fff4e5;border:1px solid #f0a040;border-radius:4px;padding:8px 12px;margin:12px 0;font-weight:600}
.review{background:#fff4e5;border:2px solid #ef6c00;border-radius:4px;padding:8px 12px;margin:8px 0}
.warn{background:#fdecea;border:1px solid #e57373;border-radius:4px;padding:6px 12px;margin:8px 0}
table.levels{border-collapse:collapse;width:100%;font-size:14px}
table.levels th,table.levels td{border:1px solid #bbb;padding:5px 8px;text-align:left;vertical-align:top}
table.levels th{background:#eef2f6}
.corrected{background:#e8f1ff;color:#0b4fa8;font-size:11px;border-radius:3px;padding:0 4px;margin-left:4px;font-weight:600}
.model{color:#666;font-size:12px;margin-left:4px}
.na{color:#8a5a00;font-style:italic}.reason{color:#666;font-size:12px}
.meas{font-size:12px;color:#333}
.view{color:#555;font-size:10.5px;border:1px solid #bbb;border-radius:3px;padding:0 3px;margin-left:5px}
h3{font-size:15px;margin:18px 0 6px}
.figs{display:flex;flex-wrap:wrap;gap:14px}
figure{margin:0;border:1px solid #ccc;padding:6px;background:#fafafa;max-width:100%;flex:0 1 auto}
figure svg.keyimage{display:block;max-width:100%;height:auto}
figcaption{font-size:12px;color:#444;margin-top:4px;max-width:480px}
.legend{display:flex;flex-wrap:wrap;gap:2px 12px;font-size:11.5px;color:#222;margin-top:4px;max-width:480px}
.legend .lg{display:inline-flex;align-items:center;gap:4px;white-space:nowrap}
table.log{border-collapse:collapse;font-size:12px}table.log td,table.log th{border:1px solid #ddd;padding:3px 6px;text-align:left}
footer{margin-top:30px;font-size:11px;color:#777}
"""

_ROMAN = {1: "I", 2: "II", 3: "III", 4: "IV", 5: "V"}


def _e(x: Any) -> str:
    return html.escape(str(x), quote=True)


def _na(f: Finding) -> str:
    reason = f' <span class="reason">({_e(f.reason)})</span>' if f.reason else ""
    return f'<span class="na">not assessed</span>{reason}'


def _view(f: Finding) -> str:
    """A small tag naming the series the grade was read on."""
    return f'<span class="view" title="graded on the {f.view} series">{f.view}</span>'


def _cell(f: Finding, text_of: Any, view: bool = False) -> str:
    """The value in force; if a reader's value stands, marked 'corrected' with the model's value beside it.

    ``view``: tag the value with the series it was read on.
    """
    if f.status == "not_assessed" and f.value is None:
        if f.reason == NOT_GRADED:   # a finding this run's models do not grade: said once, briefly
            return '<span class="na">not graded</span>'
        return _na(f)
    if f.value is None:
        return '<span class="na">no value</span>'
    out = _e(text_of(f.value))
    if view:
        out += _view(f)
    if f.corrected:
        model = _e(text_of(f.model)) if f.model is not None else "none"
        out += f'<span class="corrected">corrected</span><span class="model">model: {model}</span>'
    if f.confidence is not None and not f.corrected:
        out += f'<span class="model">conf. {f.confidence:.2f}</span>'
    return out


def _label(v: Any) -> str:
    return v.label


def _sagittal_herniation_text(v: Any) -> str:
    return "herniation" if v.present else "no herniation"


def _herniation_cell(level: Level) -> str:
    """The MSU grade (axial); without one, what the sagittal series showed, and why there is no MSU grade."""
    h, s = level.ldh, level.herniation_sag
    if h.value is None and s.value is not None:
        why = f": {_e(h.reason)}" if h.reason else ""
        return (_cell(s, _sagittal_herniation_text, view=True)
                + f'<br><span class="reason">MSU grade not assessed{why}</span>')
    return _cell(h, _herniation_text, view=True)


def _herniation_text(v: Any) -> str:
    return v.label


def _pfirrmann_text(v: Any) -> str:
    return _ROMAN[v.grade]


def _meyerding_text(v: Any) -> str:
    if v.grade == 0:
        text = "0 (none)"
    else:
        text = f"{_ROMAN[v.grade]} {v.direction}"
    if v.slip_percent is not None:
        text += f", slip {abs(v.slip_percent):.1f} %"
    return text


def _change(value: Any, kind: str = "") -> str:
    """A correction's from/to value as text: the value's label (``Pfirrmann III``, ``2-AB right``,
    ``9.2 mm, relative stenosis``), else its fields (``grade 3``), or ``none``."""
    if value is None:
        return "none"
    if isinstance(value, dict):
        if kind in FINDING_KINDS:
            try:
                return value_type_of(kind).from_dict(value).label  # type: ignore[attr-defined]
            except (KeyError, TypeError, ValueError):
                pass   # a hand-edited record: show its fields as they are
        return ", ".join(f"{k} {v}" for k, v in value.items() if v not in (None, False)) or "none"
    return str(value)


def _measurements(level: Level) -> str:
    parts = []
    sp = slip_percent(level, "value")
    if sp is not None and (level.listhesis.value is None or level.listhesis.value.slip_percent is None):
        parts.append(f"slip {sp:+.1f} %")
    for key, label, fmt in (("slip_mm", "slip", "{:+.1f} mm"), ("msu_depth_ratio", "depth ratio", "{:.2f}"),
                            ("sir", "SIR", "{:.2f}"), ("dhi", "DHI", "{:.2f}")):
        m = key_measurement(level, key)
        if m is not None:
            parts.append(f"{label} {fmt.format(m.value)}")
    return '<span class="meas">' + _e(", ".join(parts)) + "</span>" if parts else ""


def _level_row(level: Level) -> str:
    name = _e(level.name)
    if level.model_name != level.name:
        name += f'<span class="corrected">relabelled</span><span class="model">model: {_e(level.model_name)}</span>'
    if level.confidence is not None:
        name += f'<span class="model">confidence {level.confidence:.2f}</span>'
    return ("<tr>"
            f"<td><b>{name}</b></td>"
            f"<td>{_herniation_cell(level)}</td>"
            f"<td>{_cell(level.pfirrmann, _pfirrmann_text, view=True)}</td>"
            f"<td>{_cell(level.listhesis, _meyerding_text, view=True)}</td>"
            f"<td>{_measurements(level)}</td>"
            "</tr>")


# The second table: the findings of schema version 2 that the first table does not show.
OTHER_SAGITTAL_KINDS: tuple[str, ...] = (*SAGITTAL_GRADING_KINDS, "canal")


def _graded(f: Finding) -> bool:
    return f.value is not None or f.status == "assessed"


def _other_sagittal_table(a: Assessment) -> str:
    """The table of Modic, endplates, narrowing, bulging, sagittal herniation and canal AP, or a line
    saying none of them was graded."""
    if not any(_graded(lv.finding(k)) for lv in a.levels for k in OTHER_SAGITTAL_KINDS):  # type: ignore[arg-type]
        return ('<p class="meas">Modic changes, endplate defects, disc narrowing and bulging, herniation on the '
                "sagittal view and the canal's diameter were not graded in this assessment.</p>")
    head = "".join(f"<th>{_e(FINDING_TITLES[k][0].upper() + FINDING_TITLES[k][1:])}</th>" for k in OTHER_SAGITTAL_KINDS)
    rows = "".join(
        f"<tr><td><b>{_e(lv.name)}</b></td>"
        + "".join(f"<td>{_cell(lv.finding(k), _label)}</td>" for k in OTHER_SAGITTAL_KINDS)  # type: ignore[arg-type]
        + "</tr>" for lv in a.levels)
    return (f'<table class="levels other"><tr><th>Level</th>{head}</tr>{rows}</table>'
            '<p class="meas">Modic type 1-3 for the endplates above and below the disc together. Canal AP: the '
            "central canal's antero-posterior diameter at the disc on the mid-sagittal slice, graded by Verbiest's "
            "rule: absolute stenosis below 10 mm, relative from 10 to 12 mm.</p>" + _held_out_note(a))


DISC_GRADES_MODEL = "sag_disc_grades"
HELD_OUT_GRADINGS = ("endplate_upper", "endplate_lower", "narrowing", "bulging")   # sag_disc_grades' yes/no calls


def _held_out_note(a: Assessment) -> str:
    """Say how far the disc-grades model's calls held on held-out real patients, from the figures the
    manifest records for the very weights this assessment used (none for other weights)."""
    info = next((m for m in a.models if m.name == DISC_GRADES_MODEL), None)
    figures = {} if info is None else held_out_figures(info.name, info.sha256)
    g = figures.get("disc_gradings") or {}
    binary = [f"{FINDING_TITLES[k]} {g[k]['balanced_accuracy']['value']:.2f}" for k in HELD_OUT_GRADINGS
              if g.get(k, {}).get("balanced_accuracy", {}).get("value") is not None]
    parts = ["balanced accuracy " + ", ".join(binary)] if binary else []
    modic = g.get("modic", {})
    if modic.get("type_accuracy", {}).get("value") is not None:
        parts.append(f"Modic type accuracy {modic['type_accuracy']['value']:.2f} (answering \"none\" everywhere: "
                     f"{modic['majority_accuracy']:.2f})")
    if not parts:
        return ('<p class="meas"><b>How far to trust these:</b> no held-out figures are on record for the '
                "disc-grades weights of this assessment; read Modic, endplates, narrowing and bulging on the images.</p>")
    return ('<p class="meas"><b>How far to trust these:</b> graded as this software grades them, on '
            f"{_e(figures.get('patients', 'the'))} held-out patients of a public research set (SPIDER): "
            f"{_e('; '.join(parts))}. Where a figure is below 0.80, read that grade as a pointer to where to look, not "
            "a finding; the model card gives each figure with its interval.</p>")


def _caption(image: KeyImage, assessment: Assessment) -> str:
    if image.plane == "axial":
        return ("Axial slice: intra-facet line (green) with its quarter points (zone borders A | B | C), "
                "MSU keypoints, herniation outline (red) and depth line (magenta).")
    if image.plane == "sagittal":
        canal = any(lv.canal.geometry.lines for lv in assessment.levels)
        return ("Mid-sagittal slice: disc segmentation outlines, vertebral corner keypoints, detection boxes, and "
                "for each level the lower endplate line P-Q with the slip of R along it (Meyerding)"
                + (", and the canal's antero-posterior diameter." if canal else "."))
    return ""


def _legend_html(entries: Sequence[LegendEntry]) -> str:
    """Return a key image's legend: a small inline SVG of each line or marker, then its label."""
    items = [f'<span class="lg"><svg width="22" height="10" aria-hidden="true">{legend_swatch(e, 0, 5)}</svg>'
             f"{_e(e.label)}</span>" for e in entries]
    return f'<div class="legend">{"".join(items)}</div>' if items else ""


def render_report_html(assessment: Assessment, images: Sequence[KeyImage] = (),
                       title: str = "SpineAssist lumbar spine MRI assessment") -> str:
    """Return the report as one HTML string with every image embedded (inline SVG)."""
    a = assessment
    models = "".join(
        f"<tr><td>{_e(m.name)}</td><td>{_e(m.version or '-')}</td><td class=mono>{_e(m.sha256[:16])}…</td></tr>"
        for m in a.models) or '<tr><td colspan=3 class="na">no model information</td></tr>'
    meta = [("Study Instance UID", f'<span class="mono">{_e(a.study_instance_uid)}</span>')]
    if a.sagittal_series_uid:
        meta.append(("Sagittal series", f'<span class="mono">{_e(a.sagittal_series_uid)}</span>'))
    if a.axial_series_uid:
        meta.append(("Axial series", f'<span class="mono">{_e(a.axial_series_uid)}</span>'))
    meta += [("Software", f"SpineAssist {_e(a.software_version)}"), ("Assessed", _e(a.created))]
    meta_html = "".join(f"<tr><td><b>{k}</b></td><td>{v}</td></tr>" for k, v in meta)
    warnings = "".join(f'<div class="warn">{_e(w)}</div>' for w in a.warnings)
    if a.needs_review:
        warnings = ('<div class="review"><b>Needs review.</b> Look closely at: '
                    + "; ".join(_e(r) for r in a.review_reasons) + "</div>" + warnings)
    rows = "".join(_level_row(lv) for lv in a.levels) or \
        '<tr><td colspan=5 class="na">no disc levels were found</td></tr>'

    figures = []
    for img in images:
        svg, legend = render_key_image_parts(img, a)
        figures.append(f'<figure>{svg}{_legend_html(legend)}'
                       f"<figcaption>{_e(_caption(img, a))}</figcaption></figure>")
    figs_html = (f'<div class="figs">{"".join(figures)}</div>' if figures
                 else '<p class="na">No key images were given for this report.</p>')

    log = [(c, lv.name) for lv in a.levels for c in lv.all_corrections()]
    if log:
        log_rows = "".join(
            f"<tr><td>{_e(c.time)}</td><td>{_e(name)}</td><td>{_e(FINDING_TITLES.get(c.finding, c.finding))}</td>"
            f"<td>{_e(c.reader)}</td>"
            f"<td>{_e(_change(c.old, c.finding))} → {_e(_change(c.new, c.finding))}</td><td>{_e(c.note)}</td></tr>"
            for c, name in sorted(log, key=lambda t: t[0].time))
        log_html = ("<table class=log><tr><th>time</th><th>level</th><th>finding</th><th>reader</th>"
                    f"<th>change</th><th>note</th></tr>{log_rows}</table>")
    else:
        log_html = "<p>No reader corrections: every value is the model's.</p>"

    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{_e(title)}</title><style>{_CSS}</style></head>
<body>
<h1>{_e(title)}</h1>
<table class="meta">{meta_html}</table>
<div class="disclaimer">{_e(DISCLAIMER)}</div>
{warnings}
<h2>Findings per level</h2>
<table class="levels">
<tr><th>Level</th><th>Herniation (MSU)</th><th>Pfirrmann</th><th>Spondylolisthesis (Meyerding)</th><th>Measurements</th></tr>
{rows}
</table>
<p class="meas">MSU: size 1-3 - zone (A central, B lateral quarter, C beyond the facet) - side. Pfirrmann I-V.
Meyerding 0-V from the slip of the upper vertebra along the lower endplate. Values a reader corrected are marked
<span class="corrected">corrected</span> with the model's value beside them. Each grade names the series it was
read on: <span class="view">sagittal</span> or <span class="view">axial</span>; without an axial series the MSU
grade is not assessed, and the herniation column shows what the sagittal series showed.</p>
<h3>Other sagittal findings <span class="view">sagittal</span></h3>
{_other_sagittal_table(a)}
<h2>Key images</h2>
{figs_html}
<h2>Corrections</h2>
{log_html}
<h2>Software and models</h2>
<table class="log"><tr><th>model</th><th>version</th><th>SHA-256</th></tr>{models}</table>
<footer>Generated by SpineAssist {_e(a.software_version)}. {_e(DISCLAIMER)}</footer>
</body></html>
"""


def write_report_html(assessment: Assessment, path: str | os.PathLike[str], images: Sequence[KeyImage] = (),
                      title: str = "SpineAssist lumbar spine MRI assessment") -> Path:
    """Write report.html (self-contained, UTF-8) atomically; return its path."""
    path = Path(path)
    text = render_report_html(assessment, images, title)
    with atomic_write(path, "w") as f:
        f.write(text)
    return path
