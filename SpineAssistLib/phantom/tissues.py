"""Return the T2 TSE signal and the label of any set of points in the phantom (anatomy rendering).

Every structure is an implicit shape evaluated on the points given (the renderer passes the
supersampled grid of each acquired slice, never a 3D volume). Structures are painted in order,
later ones over earlier ones: body wall and fat, muscles, vessels, posterior elements, canal
contents, facet joints, discs, herniations, vertebral bodies. Signals are relative to CSF = 1.
Making a model of a spine draws the stenoses its parameters ask for (``canal.narrow_canal``, which
measures them on the model's labels), so every render of that spine has them.

Usage::

    spine = build_spine(sample_params(3))
    signal, label = evaluate(spine, x, y, z)        # LPS mm arrays of any shape
"""

from __future__ import annotations

import math

import numpy as np

from SpineAssistLib.anatomy import HERNIATION_LABEL, NEURAL_LABEL, POSTERIOR_ELEMENTS_LABEL, THECAL_SAC_LABEL
from SpineAssistLib.phantom.canal import narrow_canal
from SpineAssistLib.phantom.spine import (MODIC_BAND_MM, MODIC_SIGNAL, SUPERELLIPSE_POWER, Disc, Spine, Vertebra,
                                          superellipse)

F = np.float32
# Pfirrmann grade -> nucleus/annulus transition width (normalised radius) and texture amplitude:
# a sharp bright nucleus (I-II), blurred (III), lost (IV-V); inhomogeneity rises with grade.
NUCLEUS_EDGE = {1: 0.10, 2: 0.14, 3: 0.40, 4: 0.9, 5: 1.2}
NUCLEUS_TEXTURE = {1: 0.015, 2: 0.10, 3: 0.22, 4: 0.30, 5: 0.35}
# A narrowed canal returns to its width over this length (mm) above and below the narrowing.
CANAL_TAPER_MM = 8.0


class _Waves:
    """Smooth random texture: a sum of plane waves with seeded directions and phases (~N(0, 0.5))."""

    def __init__(self, seed: int, wavelength: float, n: int = 6):
        rng = np.random.default_rng([seed, 0x7E7])
        k = rng.normal(size=(n, 3))
        k /= np.linalg.norm(k, axis=1, keepdims=True)
        k *= (2 * math.pi / wavelength) * rng.uniform(0.7, 1.4, size=(n, 1))
        self.k = k
        self.phase = rng.uniform(0, 2 * math.pi, n)
        self.n = n

    def __call__(self, x, y, z):
        out = np.zeros(np.shape(x), F)
        for (kx, ky, kz), ph in zip(self.k, self.phase):
            out += np.sin(kx * x + ky * y + kz * z + ph)
        return out * F(1.0 / math.sqrt(self.n))


class TissueModel:
    """The subject's rendering model: per-structure signals and the precomputed tables it needs."""

    def __init__(self, spine: Spine):
        self.spine = spine
        p = spine.params
        self.S = {k: F(p.signal(k)) for k in ("csf", "fat", "marrow", "cortex", "endplate", "annulus", "muscle",
                                               "cord", "root", "ligament", "skin", "facet_fluid", "cartilage",
                                               "vessel", "viscera")}
        self.fine = _Waves(p.seed * 7 + 1, 9.0)
        self.coarse = _Waves(p.seed * 7 + 2, 40.0)
        self.bowel = _Waves(p.seed * 7 + 3, 28.0, n=8)
        self.marrow_tex = _Waves(p.seed * 7 + 4, 14.0)
        self.disc_tex = _Waves(p.seed * 7 + 5, 7.0, n=8)
        self.vert_s = {id(v): s for v, s in zip(spine.vertebrae, spine.knots_s)}
        self.disc_s = {}
        for d in spine.discs:
            self.disc_s[d.name] = float(spine.straighten(*d.center)[2])
        # a stenosis asked for is fitted on this model's own labels, before anything is rendered
        narrow_canal(spine, self)

    # ------------------------------------------------------------------------------------------
    def fields(self, x, y, z, straightened=None) -> dict[str, np.ndarray]:
        """Return the smooth per-point fields evaluate() needs (straightened coordinates, canal
        tables along the spine, textures), computed exactly at the points."""
        sp = self.spine
        if straightened is None:
            straightened = sp.straighten(x, y, z)
        a, b, s = straightened
        f = {"a": a, "b": b, "s": s}
        for key, table in (("cb", "canal_b"), ("cap", "canal_ap"), ("clr", "canal_lr"), ("hd", "half_depth"),
                           ("hw", "half_width"), ("slr", "sac_lr"), ("sap", "sac_ap")):
            f[key] = sp.along(table, s)
        f["tex_fine"] = self.fine(x, y, z)
        f["tex_streak"] = self.fine(x * 1.7, y * 1.7, z * 0.6)
        f["tex_bowel"] = self.bowel(x, y, z)
        f["tex_marrow"] = self.marrow_tex(x, y, z)
        f["tex_disc"] = self.disc_tex(x, y, z)
        return f

    def evaluate(self, x, y, z, fields=None):
        """Return (signal float32, label uint8) at LPS points; ``fields`` from fields() if precomputed."""
        sp = self.spine
        p = sp.params
        S = self.S
        shape = np.shape(x)
        cols = shape[-1] if len(shape) == 2 else max(int(np.size(x)), 1)
        x, y, z = (np.asarray(v, F).ravel() for v in (x, y, z))
        if fields is None:
            fields = self.fields(x, y, z)
        f = {k: np.asarray(v, F).ravel() for k, v in fields.items()}
        self._f = f
        a, b, s = f["a"], f["b"], f["s"]
        n = x.size
        sig = np.zeros(n, F)
        lab = np.zeros(n, np.uint8)
        cb, cap, clr, hd, hw = f["cb"], f["cap"], f["clr"], f["hd"], f["hw"]
        # rows of the grid (one row for scattered points) and the s-range each covers: a structure
        # is evaluated only on the rows its s-range meets, as contiguous views
        s2 = s.reshape(-1, cols)
        self._cols = cols
        self._row_lo = s2.min(axis=1)
        self._row_hi = s2.max(axis=1)

        # --- body wall: skin, subcutaneous fat, abdominal wall; inside: viscera in front, fat behind
        aa = np.abs(a)
        b_back = cb + cap + F(40.0) + F(p.fat_mm) - F(0.0022) * a * a - F(4.0) * np.exp(-(a / F(14.0)) ** 2)
        b0 = b_back - F(125.0)
        ell = np.sqrt((a / F(170.0)) ** 2 + ((b - b0) / F(128.0)) ** 2)
        sd = np.maximum(b - b_back, (ell - F(1.0)) * F(128.0))
        inside = sd < 0
        fat_t = np.where(b > b0, F(p.fat_mm), F(p.fat_mm * 1.3))
        # posterior compartment (behind the psoas line, within the paraspinal gutters): fat
        posterior = (b > cb) | (((a / (hw + F(75.0))) ** 2 + ((b - cb) / (cb + hd + F(22.0))) ** 2) < 1)
        viscera = inside & ~posterior
        tex = f["tex_bowel"]
        vis = S["viscera"] * (F(1.0) + F(0.5) * tex)
        vis = np.where(tex > 0.8, F(0.85) * S["csf"], vis)      # fluid-filled bowel
        vis = np.where(np.abs(tex - F(0.8)) < F(0.08), F(0.12), vis)  # bowel walls
        vis = np.where(tex < -0.95, F(0.03), vis)                 # gas
        sig[inside] = S["fat"]
        sig[viscera] = vis[viscera]
        # kidneys (T12-L3) lateral to the psoas: intermediate T2 cortex, brighter medulla
        s_l3 = float(sp.knots_s[[v.name for v in sp.vertebrae].index(p.lumbar[min(2, len(p.lumbar) - 1)])])
        kz = (s - F(s_l3 + 45.0)) / F(55.0)
        kr = ((aa - hw - F(48.0)) / F(28.0)) ** 2 + ((b - F(5.0)) / F(24.0)) ** 2 + kz * kz
        kidney = inside & (kr < 1)
        sig[kidney] = np.where(kr[kidney] < 0.35, F(0.62), F(0.42)) * S["csf"]
        # abdominal wall muscles (obliques, rectus) under the fat, except at the back
        wall = inside & (sd > -fat_t - F(12.0)) & ~((b > cb) & (aa < F(62.0)))
        sig[wall] = S["muscle"]
        # quadratus lumborum behind the kidneys, lateral to the transverse processes
        ql = inside & (((aa - clr - F(50.0)) / F(17.0)) ** 2 + ((b - cb + F(2.0)) / F(11.0)) ** 2 < 1) & (s < s_l3 + 60)
        sig[ql] = S["muscle"]
        sig[inside & (sd > -fat_t)] = S["fat"]
        sig[inside & (sd > -F(2.0))] = S["skin"]

        # --- paraspinal muscles (multifidus, erector spinae), with fatty streaks in the elderly
        deep = b_back - F(p.fat_mm) - F(1.5)
        mc = F(0.5) * (cb + deep)
        mh = F(0.5) * (deep - cb) + F(4.0)
        para = inside & (b > cb - F(10.0)) & (b < deep) & ((((aa - F(32.0)) / F(31.0)) ** 2 + ((b - mc - F(3.0)) / mh) ** 2) < 1)
        para |= inside & (aa < F(30.0)) & (b > cb + cap) & (b < deep)
        fatty = F(min(max((p.age - 40) / 40, 0.0), 1.0) * 0.3)
        sig[para] = S["muscle"] * (F(1.0) + F(0.12) * f["tex_fine"][para])
        streak = para & (f["tex_streak"] > F(1.55) - fatty)
        sig[streak] = F(0.6) * S["fat"]
        # thoracolumbar fascia between muscle and fat: a thin dark line
        fascia = inside & (np.abs(b - deep) < F(0.7)) & (aa < F(70.0))
        sig[fascia] = S["ligament"]

        # --- psoas (L1 to the sacrum), aorta and IVC / iliac vessels in front of the spine
        s_l1 = sp.knots_s[[v.name for v in sp.vertebrae].index("L1")]
        grow = np.clip((s_l1 - s) / max(s_l1 - 0.0, 1.0), 0.0, 1.0).astype(F)
        r_ps = F(4.0) + F(17.0) * grow
        c_ps = hw + F(0.6) * r_ps
        psoas = inside & (s < s_l1 + 10) & (s > -25) & (((aa - c_ps) / r_ps) ** 2 + ((b + F(0.1) * hd) / (r_ps * F(0.9))) ** 2 < 1)
        sig[psoas] = S["muscle"] * F(1.05)
        s_bif = float(sp.knots_s[[v.name for v in sp.vertebrae].index(sp.params.lumbar[-2])])
        split = np.clip(s_bif - s, 0, None).astype(F)
        ao_a = np.where(s > s_bif, F(11.0), F(11.0) + F(0.6) * split)
        r_ao = np.where(s > s_bif, F(10.0), F(6.5))
        ao_b = -hd - F(12.0)
        aorta = inside & (((a - ao_a) ** 2 + (b - ao_b) ** 2) < r_ao ** 2)
        aorta |= inside & (s < s_bif) & (((a + ao_a) ** 2 + (b - ao_b) ** 2) < r_ao ** 2)
        ivc_a = np.where(s > s_bif - 15, F(-17.0), F(-17.0) - F(0.5) * (split - 15))
        ivc = inside & ((((a - ivc_a) / F(11.0)) ** 2 + ((b + hd + F(8.0)) / F(7.5)) ** 2) < 1)
        sig[ivc] = F(0.25)
        sig[aorta] = S["vessel"]

        # --- posterior elements of every vertebra (straightened frame)
        for v, sv in zip(sp.vertebrae, sp.knots_s):
            self._posterior_elements(v, float(sv), x, y, z, a, b, s, cb, cap, clr, sig, lab)

        # --- canal: epidural fat, ligamentum flavum, thecal sac, cord / conus, cauda equina
        self._canal(x, y, z, a, b, s, cb, cap, clr, sig, lab)

        # --- facet joints, discs, herniations, vertebral bodies
        for d in sp.discs:
            if d.upper.sacral_index == 0 and d.upper.name != "T9":
                self._facets(d, x, y, z, a, b, s, sig, lab)
        for d in sp.discs:
            self._disc(d, x, y, z, a, b, s, sig, lab)
        for i, v in enumerate(sp.vertebrae):
            self._body(v, float(sp.knots_s[i]), x, y, z, a, b, s, sig, lab)
        self._sacral_discs(x, y, z, a, b, s, sig, lab)
        return sig.reshape(shape), lab.reshape(shape)

    # ------------------------------------------------------------------------------------------
    def _select(self, s_lo: float, s_hi: float, condition) -> np.ndarray:
        """Return the indices of points on the rows that reach s_lo < s < s_hi and meet
        ``condition(rows)``, where ``rows`` is the slice of those rows."""
        hit = np.nonzero((self._row_hi > s_lo) & (self._row_lo < s_hi))[0]
        if hit.size == 0:
            return hit
        start, stop = int(hit[0]) * self._cols, (int(hit[-1]) + 1) * self._cols
        return np.nonzero(condition(slice(start, stop)))[0] + start

    def _bone(self, idx, x, y, z, sd, sig, lab, label):
        """Paint bone: dark cortex within 1 mm of the surface, marrow inside."""
        S = self.S
        marrow = S["marrow"] * (F(1.0) + F(0.1) * self._f["tex_marrow"][idx])
        sig[idx] = np.where(sd > -1.1, S["cortex"], marrow)
        lab[idx] = label

    def _posterior_elements(self, v: Vertebra, sv, x, y, z, a, b, s, cb, cap, clr, sig, lab):
        H = v.height
        k = v.sacral_index
        b_min = v.posterior_wall - 4
        sel = self._select(sv - H * 0.5 - 16, sv + H * 0.5 + 6, lambda i: (np.abs(a[i]) < 75) & (b[i] > b_min))
        if sel.size == 0:
            return
        aa, bb, ss = np.abs(a[sel]), b[sel], s[sel]
        cbs, caps, clrs = cb[sel], cap[sel], clr[sel]
        scale = 1.0 if k == 0 else max(0.25, 1.0 - 0.22 * k)
        rc = np.sqrt((aa / clrs) ** 2 + ((bb - cbs) / caps) ** 2)
        sd = np.full(sel.size, F(1e3))
        # pedicles: upper half of the body, from the body's back to the canal's mid-depth
        if k <= 1:
            ped_c = clrs + F(4.5)
            sp_ = ((aa - ped_c) / F(4.5)) ** 2 + ((ss - (sv + 0.12 * H)) / F(7.0)) ** 2
            ped = (sp_ < 1) & (bb > v.posterior_wall - 3) & (bb < cbs + 0.4 * caps)
            sd = np.where(ped, (np.sqrt(sp_) - 1) * F(4.5), sd)
        # laminae: a shell behind the canal from mid-body down over the disc below
        lam_s = (ss > sv - 0.5 * H - 5) & (ss < sv + 0.15 * H)
        thick = F(5.5 * scale + 1.0)
        lam = lam_s & (rc >= 1.0) & (rc < 1.0 + thick / caps) & (bb > cbs - 0.1 * caps) & (aa < clrs + 9)
        sd = np.where(lam, -np.minimum((rc - 1.0) * caps, (1.0 + thick / caps - rc) * caps), sd)
        # spinous process: midline plate sloping caudally, club-shaped tip
        base = cbs + caps + 2
        length = F(30.0 * scale)
        t = (bb - base) / length
        s_mid = sv - 0.22 * H - 6.0 * t
        half_h = F(5.5 * scale + 1.0) * (1.0 + 0.3 * np.clip(t, 0, 1))
        half_w = F(3.5 * scale + 0.5) * (1.0 + 0.3 * np.clip(t - 0.7, 0, 1) / 0.3)
        spn = (t > -0.15) & (t < 1.0) & (np.abs(ss - s_mid) < half_h) & (aa < half_w)
        sd = np.where(spn, -np.minimum(half_w - aa, half_h - np.abs(ss - s_mid)), sd)
        # transverse processes (lumbar) / sacral ala
        if k == 0 and v.name.startswith("L"):
            tp_len = 18.0 + 8.0 * (v.name in ("L3", "L4"))
            tp = (aa > clrs + 6) & (aa < clrs + 6 + tp_len) & (np.abs(bb - cbs + 2) < 4.0) & (np.abs(ss - sv - 0.1 * H) < 5.0)
            sd = np.where(tp, -np.minimum(4.0 - np.abs(bb - cbs + 2), 5.0 - np.abs(ss - sv - 0.1 * H)), sd)
        hit = sd < 0
        if hit.any():
            idx = sel[hit]
            self._bone(idx, x, y, z, sd[hit], sig, lab, POSTERIOR_ELEMENTS_LABEL)
        # interspinous ligament below the spinous process
        isl = (aa < 2.0) & (bb > base) & (bb < base + length) & (ss < sv - 0.5 * H) & (ss > sv - 0.5 * H - 10) & ~hit
        sig[sel[isl]] = self.S["ligament"] * F(1.5)

    def _canal(self, x, y, z, a, b, s, cb, cap, clr, sig, lab):
        sp = self.spine
        S = self.S
        sel = self._select(-100, 1e4, lambda i: (np.abs(a[i]) < clr[i] + 14) & (np.abs(b[i] - cb[i]) < cap[i] + 6))
        aa, bb, ss = a[sel], b[sel], s[sel]
        cbs, caps, clrs = cb[sel], cap[sel], clr[sel]
        rc = np.sqrt((aa / clrs) ** 2 + ((bb - cbs) / caps) ** 2)
        canal = rc < 1.0
        val = np.full(sel.size, np.nan, F)
        lb = np.zeros(sel.size, np.uint8)
        val[canal] = S["fat"] * F(0.95)
        # ligamentum flavum lines the posterolateral canal wall; thicker with degeneration
        lf_t = F(3.0 + 0.3 * max(sp.params.age - 50, 0) / 10)
        # a stenosis asked for: a hypertrophied flavum pushes the sac's posterior wall forward by g
        g = self._canal_narrowing(ss)
        if g is not None:
            lf_t = lf_t + g
        lf = canal & (rc > 1.0 - lf_t / caps) & (bb > cbs + 0.05 * caps)
        val[lf] = S["ligament"]
        # thecal sac, ending at S2 in a rounded cap
        slr = self._f["slr"][sel]
        sap = self._f["sap"][sel]
        taper = np.sqrt(np.clip((ss - sp.sac_end_s) / 14.0, 0, 1)).astype(F)
        slr, sap = slr * taper + F(1e-3), sap * taper + F(1e-3)
        sb = cbs - F(0.3)
        root_depth = F(1.0)
        if g is not None:
            # the anterior wall stays; the roots keep their place in the narrower sac
            root_depth = (sap - F(0.5) * g) / sap
            sap = sap - F(0.5) * g
            sb = sb - F(0.5) * g
        rs = (aa / slr) ** 2 + ((bb - sb) / sap) ** 2
        sac = rs < 1.0
        dura = (rs >= 1.0) & (rs < 1.0 + F(1.2) / sap)
        val[dura] = S["ligament"] * F(2.0)
        val[sac] = S["csf"]
        lb[sac] = THECAL_SAC_LABEL
        # cord and conus medullaris, filum terminale
        tip = sp.conus_tip_s
        cone = np.sqrt(np.clip((ss - tip) / 28.0, 0, 1)).astype(F)
        cord = sac & (((aa / (F(4.3) * cone + F(1e-3))) ** 2 + ((bb - sb + F(0.8)) / (F(3.6) * cone + F(1e-3))) ** 2) < 1)
        filum = sac & (ss < tip) & ((aa ** 2 + (bb - sb - F(0.5)) ** 2) < F(0.55) ** 2)
        neural = cord | filum
        # cauda equina roots, dorsal in the sac (supine), each pair turning out to its foramen
        for ra, rb, s_exit, side in sp.roots:
            drift = np.clip((s_exit + 22.0 - ss) / 22.0, 0, None).astype(F)
            ca = F(ra) + F(side) * drift * (clrs + F(6.0) - F(abs(ra)))
            cbr = sb + F(rb) * root_depth * (F(1.0) - np.minimum(drift, F(1.0))) - F(2.0) * np.minimum(drift, F(1.0))
            root = (ss < tip) & (ss > s_exit - 12) & (((aa - ca) ** 2 + (bb - cbr) ** 2) < F(1.0)) & (np.abs(aa) < clrs + 12)
            neural |= root
        val[neural] = np.where(sac[neural], S["cord"], S["root"])
        lb[neural] = NEURAL_LABEL
        has = ~np.isnan(val)
        sig[sel[has]] = val[has]
        lab[sel[has]] = lb[has]

    def _canal_narrowing(self, s) -> np.ndarray | None:
        """Return how far (mm) the sac's posterior wall is pushed forward at arc lengths ``s``: flat
        over each narrowed disc's canal_flat_mm either side of its canal line, then a cosine taper;
        None where no disc is narrowed (the canal as the phantom always drew it)."""
        narrowed = [d for d in self.spine.discs if d.canal_narrowing_mm > 0]
        if not narrowed:
            return None
        g = np.zeros(np.shape(s), F)
        for d in narrowed:
            off = np.maximum(np.abs(s - F(d.canal_s)) - F(d.canal_flat_mm), F(0.0))
            w = np.where(off < CANAL_TAPER_MM, np.cos(off * F(math.pi / (2 * CANAL_TAPER_MM))) ** 2, F(0.0))
            g = np.maximum(g, F(d.canal_narrowing_mm) * w.astype(F))
        return g

    def _facets(self, d: Disc, x, y, z, a, b, s, sig, lab):
        sd_ = self.disc_s[d.name]
        fa = d.facet_medial[0]
        sel = self._select(sd_ - 17, sd_ + 17, lambda i: (np.abs(a[i]) > fa - 9) & (np.abs(a[i]) < fa + 20)
                           & (b[i] > 8) & (b[i] < 75))
        if sel.size == 0:
            return
        ad, bd, nd = d.to_local(x[sel], y[sel], z[sel])
        fa, fb = d.facet_medial
        a_off = d.canal_offset[0]
        th = d.facet_angle
        jw = 0.7
        length = 12.0
        out_sd = np.full(sel.size, F(1e3))
        fluid = np.zeros(sel.size, bool)
        for side in (-1.0, 1.0):
            mx, my = side * fa + a_off, fb
            dx, dy = side * math.sin(th), math.cos(th)           # joint line, posterolateral
            nx, ny = side * math.cos(th), -math.sin(th)          # towards the SAP (anterolateral)
            along = (ad - mx) * dx + (bd - my) * dy
            perp = (ad - mx) * nx + (bd - my) * ny
            # each articular process: half of a rounded capsule around the joint line
            al_c = np.clip(along, 0.0, length)
            dist = np.sqrt((along - al_c) ** 2 + perp * perp)
            sap = (perp > jw) & (dist < 7.0) & (along > -2.0) & (nd > -15) & (nd < 9)
            iap = (perp < -jw) & (dist < 8.0) & (along > -2.0) & (nd > -9) & (nd < 15)
            joint = (along >= 0) & (along < length - 1) & (np.abs(perp) <= jw) & (np.abs(nd) < 9)
            sd_sap = np.maximum(dist - 7.0, jw - perp)
            sd_iap = np.maximum(dist - 8.0, jw + perp)
            out_sd = np.where(sap, np.minimum(out_sd, sd_sap), out_sd)
            out_sd = np.where(iap, np.minimum(out_sd, sd_iap), out_sd)
            fluid |= joint
        # the canal stays open behind the intra-facet line: no articular process inside it there
        cb_d = d.canal_offset[1]
        rc = ((ad - a_off) / d.canal_lr) ** 2 + ((bd - cb_d) / d.canal_ap) ** 2
        near_m = np.minimum(((ad - a_off) - fa) ** 2, ((ad - a_off) + fa) ** 2) + (bd - fb) ** 2 < 4.0
        out_sd = np.where((((rc < 1.0) & (bd > fb + 1.0)) | (rc < 0.85)) & ~near_m, F(1e3), out_sd)
        bone = out_sd < 0
        if bone.any():
            self._bone(sel[bone], x, y, z, out_sd[bone], sig, lab, POSTERIOR_ELEMENTS_LABEL)
        sig[sel[fluid]] = self.S["facet_fluid"]
        lab[sel[fluid]] = POSTERIOR_ELEMENTS_LABEL

    def _disc(self, d: Disc, x, y, z, a, b, s, sig, lab):
        lo, up = d.lower, d.upper
        s_lo = self.vert_s[id(lo)] + 0.5 * lo.height - 7
        s_up = self.vert_s[id(up)] - 0.5 * up.height + 7
        reach = max(lo.half_depth, up.half_depth) + 12 + (d.herniation.apex_b if d.herniation else 0)
        wmax = max(lo.half_width, up.half_width) + 8
        sel = self._select(s_lo, s_up, lambda i: (np.abs(a[i]) < wmax) & (b[i] > -reach) & (b[i] < reach))
        if sel.size == 0:
            return
        xs, ys, zs = x[sel], y[sel], z[sel]
        al, bl, wl = lo.to_local(xs, ys, zs)
        au, bu, wu = up.to_local(xs, ys, zs)
        g_l = wl - lo.top(bl, lo.rho(al, bl))
        g_u = up.bottom(bu, up.rho(au, bu)) - wu
        between = (g_l > -0.05) & (g_u > -0.05)
        t = np.clip(g_l / np.maximum(g_l + g_u, 1e-3), 0, 1).astype(F)
        ad = (1 - t) * al + t * au
        bd = (1 - t) * bl + t * bu
        A = (1 - t) * lo.half_width + t * up.half_width
        B = (1 - t) * lo.half_depth + t * up.half_depth
        conc = (1 - t) * lo.posterior_concavity + t * up.posterior_concavity
        bb = np.where(bd > 0, bd + conc * np.clip(1 - (ad / A) ** 2, 0, 1), bd)
        rho = superellipse(ad / A, bb / B)
        radial = (rho - 1) * np.minimum(A, B) * F(0.9 / SUPERELLIPSE_POWER)
        bump = np.sin(np.pi * t).astype(F)
        normal_out = F(0.3) * bump
        disc_in = between & (radial < normal_out)
        bulge = between & ~disc_in & (radial < normal_out + F(d.bulge_mm) * bump) if d.bulge_mm > 0 else np.zeros_like(disc_in)
        if d.label == 0 and not disc_in.any():
            return
        # nucleus: an ellipsoid a little posterior of centre; its edge blurs with degeneration
        g = d.grade
        hgt = g_l + g_u
        nr = np.sqrt((ad / (F(0.7) * A)) ** 2 + ((bd - F(0.08) * B) / (F(0.64) * B)) ** 2 + ((t - F(0.5)) / F(0.44)) ** 2)
        e = NUCLEUS_EDGE[g]
        m = np.clip((1 + e / 2 - nr) / e, 0, 1)
        m = m * m * (3 - 2 * m)
        ann = self.S["annulus"]
        nuc = F(d.nucleus_signal) * self.S["csf"]
        tex = self._f["tex_disc"][sel]
        val = ann + m * (nuc - ann) * (F(1.0) + F(NUCLEUS_TEXTURE[g]) * tex)
        if d.band:
            val = val - m * (nuc - ann) * F(0.45) * np.exp(-(((t - 0.5) * hgt) / F(0.6)) ** 2)
        if g == 5:
            val = np.where(tex > 1.1, F(0.02), val)                 # vacuum phenomenon
        idx = sel[disc_in]
        sig[idx] = val[disc_in]
        lab[idx] = d.label
        if bulge.any():
            sig[sel[bulge]] = ann
            lab[sel[bulge]] = HERNIATION_LABEL
        h = d.herniation
        if h is not None:
            an, bn, nn = d.to_local(xs, ys, zs)
            prof = h.profile(an)
            vert = np.clip(1 - np.square(np.square(nn / h.half_height)), 0, 1)
            edge_b = _edge_b(d, h)
            top = edge_b + (h.apex_b - edge_b) * prof * np.sqrt(vert)
            from SpineAssistLib.phantom.spine import _margin_b
            herni = (prof >= 0) & (vert > 0) & (bn <= top) & (bn >= _margin_b(d, an) - 2.5) & ~disc_in
            herni &= lab[sel] != POSTERIOR_ELEMENTS_LABEL             # disc material does not pass bone
            if herni.any():
                hv = F(h.signal) * self.S["csf"] * (F(1.0) + F(0.15) * tex[herni])
                sig[sel[herni]] = hv
                lab[sel[herni]] = HERNIATION_LABEL

    def _body(self, v: Vertebra, sv, x, y, z, a, b, s, sig, lab):
        sel = self._select(sv - v.height / 2 - 8, sv + v.height / 2 + 8,
                           lambda i: (np.abs(a[i]) < v.half_width + 6) & (np.abs(b[i]) < v.half_depth + 8))
        if sel.size == 0:
            return
        xs, ys, zs = x[sel], y[sel], z[sel]
        al, bl, wl = v.to_local(xs, ys, zs)
        sd, sd_w, _ = v.signed_distance(al, bl, wl)
        inside = sd < 0
        if not inside.any():
            return
        S = self.S
        marrow = S["marrow"] * (F(1.0) + F(0.1) * self._f["tex_marrow"][sel])
        # basivertebral vein: a bright notch at the middle of the posterior wall
        vein = (np.abs(al) < 2.5) & (bl > v.posterior_wall - 8) & (np.abs(wl) < 1.6)
        marrow = np.where(vein, F(0.85) * S["csf"], marrow)
        # Modic change beside a degenerated disc: a band under the endplate, bright (I, II) or dark (III)
        lo_m, up_m = v.modic
        if lo_m:
            marrow = np.where(wl < -v.height / 2 + MODIC_BAND_MM, marrow * F(MODIC_SIGNAL[lo_m]), marrow)
        if up_m:
            marrow = np.where(wl > v.height / 2 - MODIC_BAND_MM, marrow * F(MODIC_SIGNAL[up_m]), marrow)
        cortex = (sd > -1.0) | (sd_w > -1.2)
        val = np.where(cortex, np.where(sd_w > -1.2, S["endplate"], S["cortex"]), marrow)
        label = np.full(sel.size, v.label, np.uint8)
        for notch in v.defects:
            # disc material in the notch, inside a dark sclerotic rim that carries the endplate round it
            core = notch.inside(v, al, bl, wl)
            rim = notch.inside(v, al, bl, wl, rim=1.0) & ~core
            val = np.where(rim, S["endplate"], val)
            val = np.where(core, F(notch.signal) * S["csf"], val)
            label = np.where(core, np.uint8(notch.disc_label), label)
        sig[sel[inside]] = val[inside]
        lab[sel[inside]] = label[inside]

    def _sacral_discs(self, x, y, z, a, b, s, sig, lab):
        """Rudimentary discs between the fused sacral segments: thin dark lines, labelled sacrum."""
        sac = [v for v in self.spine.vertebrae if v.sacral_index]
        for up, lo in zip(sac, sac[1:]):
            s_up, s_lo = self.vert_s[id(up)], self.vert_s[id(lo)]
            sel = self._select(s_lo, s_up, lambda i: (np.abs(a[i]) < up.half_width) & (np.abs(b[i]) < up.half_depth + 2))
            if sel.size == 0:
                continue
            xs, ys, zs = x[sel], y[sel], z[sel]
            al, bl, wl = lo.to_local(xs, ys, zs)
            au, bu, wu = up.to_local(xs, ys, zs)
            between = (wl > lo.top(bl, lo.rho(al, bl)) - 0.05) & (wu < up.bottom(bu, up.rho(au, bu)) + 0.05)
            inside = between & (lo.rho(al, bl) < 1.0) & (up.rho(au, bu) < 1.0)
            sig[sel[inside]] = self.S["annulus"] * F(1.3)
            lab[sel[inside]] = up.label


def _edge_b(d: Disc, h) -> float:
    from SpineAssistLib.phantom.spine import _margin_b

    return float(np.max(_margin_b(d, np.array([h.center_a - h.half_width, h.center_a + h.half_width]))))
