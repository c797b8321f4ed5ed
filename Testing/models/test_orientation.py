"""The canonical view (models.orientation): what a model is shown, and how its answers map back to the slice."""

from __future__ import annotations

import numpy as np
import pytest


def _slice_affine(row_dir, col_dir, origin=(5.0, -3.0, 7.0), spacing=(0.7, 0.6)):
    A = np.eye(4)
    A[:3, 0] = np.array(row_dir, float) * spacing[0]
    A[:3, 1] = np.array(col_dir, float) * spacing[1]
    A[:3, 2] = np.cross(row_dir, col_dir)
    A[:3, 3] = origin
    return A


@pytest.mark.parametrize("row_dir,col_dir,plane,expected", [
    ((0, 0, -1), (0, 1, 0), "sagittal", (False, False, False)),    # anterior on the left: as trained
    ((0, 0, -1), (0, -1, 0), "sagittal", (False, False, True)),    # anterior on the right
    ((0, 1, 0), (0, 0, -1), "sagittal", (True, False, False)),     # rows and columns swapped
    ((0, 1, 0), (1, 0, 0), "axial", (False, False, False)),        # radiological (head first)
    ((0, 1, 0), (-1, 0, 0), "axial", (False, False, True)),        # feet first: patient's left on the image left
    ((0, -1, 0), (-1, 0, 0), "axial", (False, True, True)),        # prone
])
def test_slice_orientation_from_the_geometry(row_dir, col_dir, plane, expected):
    from SpineAssistLib.models.orientation import SliceOrientation

    o = SliceOrientation.of(_slice_affine(row_dir, col_dir), plane)
    assert (o.transpose, o.flip_rows, o.flip_cols) == expected


@pytest.mark.parametrize("transpose", [False, True])
@pytest.mark.parametrize("flip_rows", [False, True])
@pytest.mark.parametrize("flip_cols", [False, True])
def test_canonical_view_round_trips_pixels_boxes_and_lps(transpose, flip_rows, flip_cols):
    from SpineAssistLib.geometry import xy_to_world
    from SpineAssistLib.models.orientation import SliceOrientation

    o = SliceOrientation(transpose, flip_rows, flip_cols)
    img = np.zeros((30, 50))
    img[7, 41] = 1.0                                   # row 7, column 41
    view = o.image(img)
    r, c = np.argwhere(view == 1.0)[0]
    assert o.xy_back(np.array([c, r]), view.shape).tolist() == [41, 7]
    assert o.xy(np.array([41, 7]), img.shape).tolist() == [c, r]
    assert np.array_equal(o.image_back(view), img)
    box = o.box_back(np.array([[c - 2, r - 1, c + 3, r + 4]]), view.shape)[0]
    assert box[0] <= 41 <= box[2] and box[1] <= 7 <= box[3]
    A = _slice_affine((0, 0, -1), (0, 1, 0))
    Ac = o.affine(A, img.shape)
    assert np.allclose(xy_to_world(np.array([[c, r]]), Ac), xy_to_world(np.array([[41, 7]]), A))


def test_a_model_sees_the_canonical_view_and_answers_in_the_slice_pixels():
    from SpineAssistLib.models.orientation import Oriented, SliceOrientation
    from SpineAssistLib.models.yolo import YoloResult

    class BrightestPixel:          # a "model" that boxes and points at the brightest pixel it is shown
        def predict(self, image, **_):
            r, c = np.unravel_index(np.argmax(image), image.shape)
            self.shown = image
            return YoloResult(("disc",), np.array([[c - 1.0, r - 1.0, c + 1.0, r + 1.0]]), np.ones(1), np.zeros(1, int),
                              keypoints=np.array([[[float(c), float(r)]]]), keypoint_scores=np.ones((1, 1)))

    img = np.zeros((20, 40))
    img[5, 30] = 1.0
    model = BrightestPixel()
    o = SliceOrientation.of(_slice_affine((0, 0, -1), (0, -1, 0)), "sagittal")   # anterior on the right
    r = Oriented(model, o).predict(img)
    assert np.argwhere(model.shown == 1.0)[0].tolist() == [5, 40 - 1 - 30]     # it saw the mirror image
    assert r.keypoints[0, 0].tolist() == [30.0, 5.0]                            # and answers in the slice's pixels
    assert r.boxes[0].tolist() == [29.0, 4.0, 31.0, 6.0]


def test_a_region_maps_into_the_canonical_view_with_the_slice():
    from SpineAssistLib.models.orientation import SliceOrientation

    image = np.arange(6 * 9).reshape(6, 9)
    roi = (slice(1, 4), slice(2, 7))
    for o in (SliceOrientation(t, r, c) for t in (False, True) for r in (False, True) for c in (False, True)):
        view_roi = o.roi(roi, image.shape)
        assert sorted(o.image(image)[view_roi].ravel()) == sorted(image[roi].ravel()), o
