"""Pixel <-> LPS conversions of a slice of a training study (SpineAssistLib.geometry)."""

from __future__ import annotations

import pytest
from support.toy_study import toy_study as _toy_study


def test_pixels_and_lps_round_trip():
    from SpineAssistLib.geometry import slice_affine, world_to_index, xy_to_world

    A = _toy_study()["sag_affine"]
    S = slice_affine(A, 1, "slice,row,col")
    p = xy_to_world([[21.0, 11.0]], S)[0]             # x = column 21, y = row 11 on slice 1
    assert p == pytest.approx([2.0, 21.0, -11.0])
    assert world_to_index(p, S) == pytest.approx([11.0, 21.0, 0.0])
