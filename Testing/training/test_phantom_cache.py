"""The phantom render cache (training.phantom_cache) is keyed by the render code."""

from __future__ import annotations

import numpy as np


def test_phantom_cache_is_keyed_by_the_render_code(tmp_path, monkeypatch):
    """A render cached by other phantom code is rendered anew, and a partial (training) render is
    never replaced by a cached whole study of the same seed."""
    from SpineAssistLib.training import phantom_cache as pc

    calls: list[tuple[str, int]] = []

    def fake(kind):
        def render(seed, overrides=None, **kw):
            calls.append((kind, seed))
            arrays = {k: np.full((1, 2, 2), len(calls), np.uint16) for k in pc._ARRAYS}
            return {"seed": seed, "render": kind, **arrays}
        return render

    monkeypatch.setattr(pc, "render_training_phantom", fake("partial"))
    monkeypatch.setattr(pc, "render_phantom", fake("whole"))
    monkeypatch.setattr(pc, "_RENDER_VERSION", "aaaaaaaa")
    assert pc.load_phantom(7, cache_dir=tmp_path)["render"] == "whole"
    first = pc.load_phantom(7, cache_dir=tmp_path, partial=True)
    assert first["render"] == "partial" and calls == [("whole", 7), ("partial", 7)]
    again = pc.load_phantom(7, cache_dir=tmp_path, partial=True)          # read from the cache
    assert calls == [("whole", 7), ("partial", 7)] and int(again["sag_images"][0, 0, 0]) == 2
    monkeypatch.setattr(pc, "_RENDER_VERSION", "bbbbbbbb")                # the phantom code changed
    newer = pc.load_phantom(7, cache_dir=tmp_path, partial=True)
    assert calls[-1] == ("partial", 7) and int(newer["sag_images"][0, 0, 0]) == 3
    monkeypatch.setattr(pc, "_RENDER_VERSION", None)
    v = pc.render_version()
    assert len(v) == 8 and int(v, 16) >= 0 and v == pc.render_version()
