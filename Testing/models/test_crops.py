"""The keypoint models' windows (``models.crops``): geometry checked by hand, placement from disc
masks, the mapping of a window model's answer back to a slice stored the other way round, the
training samples they make, and the errors a bad mask or spacing gives."""

from __future__ import annotations

import math

import numpy as np
import pytest

from SpineAssistLib.models.crops import (Crop, WindowKeypoints, axial_crop_from_keypoints, axial_disc_crop,
                                         sagittal_disc_crop, window_keypoints)
from SpineAssistLib.models.yolo import YoloResult


def test_crop_maps_points_by_hand():
    c = Crop(cx=50.0, cy=40.0, angle=0.0, side_mm=64.0, size=64, spacing=(1.0, 1.0))   # 1 mm a pixel
    assert c.mm_per_pixel == 1.0
    assert c.to_crop(np.array([50.0, 40.0])) == pytest.approx([31.5, 31.5])     # centre of a 64 px window
    assert c.to_crop(np.array([60.0, 40.0])) == pytest.approx([41.5, 31.5])     # 10 mm to the right
    # a 3-4-5 triangle keeps its 5 mm hypotenuse in the window
    a, b = c.to_crop(np.array([[50.0, 40.0], [53.0, 44.0]]))
    assert np.linalg.norm(b - a) == pytest.approx(5.0)


def test_crop_rotation_and_non_square_pixels():
    turned = Crop(50.0, 40.0, math.radians(90), 64.0, 64, (1.0, 1.0))
    # the window's rows run along the slice's +y: a point 10 mm below the centre is 10 px right in the window
    assert turned.to_crop(np.array([50.0, 50.0])) == pytest.approx([41.5, 31.5])
    wide = Crop(50.0, 40.0, 0.0, 32.0, 64, (0.5, 1.0))    # columns 0.5 mm, rows 1 mm; window 0.5 mm a pixel
    assert wide.to_crop(np.array([60.0, 40.0])) == pytest.approx([31.5 + 10.0, 31.5])   # 5 mm = 10 window px
    assert wide.to_crop(np.array([50.0, 45.0])) == pytest.approx([31.5, 31.5 + 10.0])   # 5 mm = 10 window px
    pts = np.array([[3.0, 4.0], [70.0, 12.5]])
    assert wide.from_crop(wide.to_crop(pts)) == pytest.approx(pts)


def test_crop_image_samples_the_window():
    img = np.zeros((100, 120), np.float32)
    img[40, 70] = 1.0
    c = Crop(70.0, 40.0, math.radians(30), 32.0, 64, (0.5, 0.5))   # the bright pixel is the window's centre
    w = c.image(img)
    assert w.shape == (64, 64) and w.dtype == np.float32
    peak = np.unravel_index(np.argmax(w), w.shape)
    assert abs(peak[0] - 31.5) <= 0.5 and abs(peak[1] - 31.5) <= 0.5
    # outside the slice the window is black, and nearest sampling keeps label values
    labels = np.full((100, 120), 7, np.uint8)
    far = Crop(0.0, 0.0, 0.0, 64.0, 32, (1.0, 1.0)).image(labels, order=0)
    assert far[0, 0] == 0 and far[-1, -1] == 7 and set(np.unique(far)) == {0, 7}


def test_crop_rejects_bad_values():
    with pytest.raises(ValueError, match="side_mm"):
        Crop(0, 0, 0, -1.0)
    with pytest.raises(ValueError, match="spacing"):
        Crop(0, 0, 0, 10.0, 32, (0.0, 1.0))
    with pytest.raises(ValueError, match="finite"):
        Crop(float("nan"), 0, 0, 10.0)


def _band(shape, centre, angle_deg, length, width):
    """A filled rectangle (a disc seen from the side) turned by angle_deg."""
    rows, cols = np.mgrid[0:shape[0], 0:shape[1]]
    t = math.radians(angle_deg)
    u = (cols - centre[0]) * math.cos(t) + (rows - centre[1]) * math.sin(t)
    v = -(cols - centre[0]) * math.sin(t) + (rows - centre[1]) * math.cos(t)
    return (np.abs(u) <= length / 2) & (np.abs(v) <= width / 2)


def test_sagittal_window_follows_the_disc():
    mask = _band((200, 200), (100.0, 90.0), 30.0, 60, 12)
    c = sagittal_disc_crop(mask, (0.7, 0.7))
    assert (c.cx, c.cy) == pytest.approx((100.0, 90.0), abs=0.2)
    assert math.degrees(c.angle) == pytest.approx(30.0, abs=1.0)   # rows along the disc's long axis
    assert c.side_mm == 64.0 and c.size == 192
    # the disc's anterior and posterior ends lie on the window's middle row
    ends = c.to_crop(np.array([[100 - 30 * math.cos(math.radians(30)), 90 - 30 * math.sin(math.radians(30))],
                               [100 + 30 * math.cos(math.radians(30)), 90 + 30 * math.sin(math.radians(30))]]))
    assert ends[:, 1] == pytest.approx([95.5, 95.5], abs=0.5)
    assert ends[1, 0] - ends[0, 0] == pytest.approx(60 * 0.7 / c.mm_per_pixel, abs=0.5)


def test_axial_window_sits_behind_the_disc_margin():
    mask = np.zeros((100, 120), bool)
    mask[45:55, 20:80] = True       # posterior margin on row 54, centroid row 49.5
    c = axial_disc_crop(mask, (0.8, 0.8))
    # 10 mm behind the margin: (54 - 49.5) px + 10 / 0.8 px below the centroid
    assert (c.cx, c.cy) == pytest.approx((49.5, 49.5 + 4.5 + 12.5))
    assert c.angle == pytest.approx(0.0)
    k = axial_crop_from_keypoints((30.0, 70.0), (70.0, 70.0), (50.0, 54.0), (0.8, 0.8))
    assert (k.cx, k.cy, k.angle) == pytest.approx((50.0, 54.0 + 12.5, 0.0))


def test_window_placement_needs_a_disc():
    with pytest.raises(ValueError, match="pixels"):
        sagittal_disc_crop(np.zeros((50, 50), bool), (1.0, 1.0))


class _FixedWindowModel:
    """Answers every window with the same keypoints in window pixels."""

    def __init__(self, kp):
        self.kp = np.asarray(kp, float)
        self.pairs = []

    def predict_windows(self, pairs, conf=0.1):
        self.pairs.extend(pairs)
        return [YoloResult(("disc space",), np.array([[0.0, 0.0, 10.0, 10.0]]), np.array([0.8]), np.zeros(1, int),
                           keypoints=self.kp[None], keypoint_scores=np.ones((1, len(self.kp))))
                for _ in pairs]


def test_window_answers_return_to_a_slice_stored_the_other_way_round():
    # a sagittal slice stored with anterior on the image right: columns run to LPS -y
    A = np.eye(4)
    A[:3, 0] = [0.0, 0.0, -1.0]       # rows: head to feet
    A[:3, 1] = [0.0, -1.0, 0.0]       # columns: back to front
    image = np.zeros((80, 100), np.float32)
    mask = np.zeros((80, 100), bool)
    mask[35:45, 10:70] = True         # a horizontal disc, centre (39.5, 39.5); (59.5, 39.5) in the canonical view
    centre = np.array([[95.5, 95.5]])  # the window's centre (192 px window)
    model = _FixedWindowModel(np.vstack([centre, centre + [30.0, 0.0]]))
    [w] = window_keypoints(model, [(image, A, mask)], "sagittal")
    assert isinstance(w, WindowKeypoints) and w.score == pytest.approx(0.8)
    assert w.keypoints[0] == pytest.approx([39.5, 39.5], abs=1e-6)
    # 30 window px (10 mm) to the canonical right is posterior: towards the stored image's left
    assert w.keypoints[1] == pytest.approx([29.5, 39.5], abs=1e-6)
    # the model saw the canonical view: the slice flipped left to right
    seen, crop = model.pairs[0]
    assert seen.shape == (80, 100) and crop.cx == pytest.approx(59.5)


def test_window_keypoints_skip_a_missing_disc():
    A = np.eye(4)
    A[:3, 0], A[:3, 1] = [0.0, 1.0, 0.0], [1.0, 0.0, 0.0]    # axial, radiological
    image = np.zeros((60, 60), np.float32)
    model = _FixedWindowModel(np.zeros((5, 2)))
    assert window_keypoints(model, [(image, A, np.zeros((60, 60), bool))], "axial") == [None]
    assert model.pairs == []
    with pytest.raises(ValueError, match="plane"):
        window_keypoints(model, [], "coronal")


def test_disc_corner_windows_label_the_four_corners():
    from SpineAssistLib.anatomy import DISC_LABELS
    from SpineAssistLib.training.datasets import _window_line, disc_corner_windows, parse_label_line

    labels = np.zeros((200, 200), np.uint8)
    labels[_band((200, 200), (100.0, 100.0), 0.0, 50, 10)] = DISC_LABELS["L4-L5"]
    corners = {"L4 anterior-inferior": (75.0, 94.0), "L4 posterior-inferior": (125.0, 94.0),
               "L5 anterior-superior": (75.0, 106.0), "L5 posterior-superior": (125.0, 106.0),
               "L3 anterior-inferior": (75.0, 40.0)}                 # a level with no labelled disc: no window
    [(level, crop, kps)] = disc_corner_windows(labels, corners, (1.0, 1.0))
    assert level == "L4-L5" and kps[0] == (75.0, 94.0)
    d = parse_label_line(_window_line(crop, kps), 4)
    xy = d["keypoints"][:, :2] * crop.size - 0.5
    assert d["keypoints"][:, 2].tolist() == [2, 2, 2, 2]
    assert xy == pytest.approx(crop.to_crop(np.array(kps)), abs=1e-3)
    # a corner outside the window is labelled absent
    far = list(kps)
    far[3] = (400.0, 106.0)
    assert parse_label_line(_window_line(crop, far), 4)["keypoints"][3].tolist() == [0, 0, 0]


def test_a_window_mask_returns_to_the_slice_it_came_from():
    labels = np.zeros((120, 140), np.uint8)
    labels[40:70, 30:100] = 201           # a disc
    labels[70:76, 60:70] = 150            # herniation material behind it
    c = Crop(65.0, 60.0, math.radians(8), 84.0, 256, (1.0, 1.0))   # 3 window pixels a slice pixel
    window = c.image(labels, order=0).astype(np.uint8)
    back = c.to_slice(window, labels.shape)
    inside = np.abs(c.to_crop(np.stack(np.meshgrid(np.arange(140), np.arange(120)), -1).astype(float)) - 127.5).max(-1) < 126
    assert inside.sum() > 5000 and (back[inside] == labels[inside]).all()
    assert (back[~inside] == 0).all()


class _WindowSegModel:
    """Answers every window with one disc mask: the window's central third of rows, all columns."""

    names = ("disc", "herniation", "thecal sac")

    def predict_windows(self, pairs, conf=0.25, max_det=30):
        out = []
        for _, crop in pairs:
            m = np.zeros((crop.size, crop.size), bool)
            m[crop.size // 3: 2 * crop.size // 3, :] = True
            out.append(YoloResult(self.names, np.zeros((1, 4)), np.array([0.9]), np.zeros(1, int), masks=m[None]))
        return out


def test_window_segmentation_comes_back_in_the_slices_pixels():
    from SpineAssistLib.models.crops import refined_segmentations, window_segmentation

    A = np.eye(4)
    A[:3, 0], A[:3, 1] = [0.0, 1.0, 0.0], [-1.0, 0.0, 0.0]   # feet first: columns run to the patient's right
    disc = np.zeros((200, 200), bool)
    disc[80:110, 30:130] = True       # centre column 79.5: 119.5 in the canonical (radiological) view
    [r] = window_segmentation(_WindowSegModel(), [(np.zeros((200, 200), np.float32), A, disc)])
    m = r.mask_of("disc")
    assert m.shape == (200, 200) and r.boxes.shape == (1, 4)
    rows, cols = np.nonzero(m)
    # the window is 84 mm (84 px) wide, centred on the disc's posterior margin (row 109) at the mid-line
    assert rows.min() == pytest.approx(109 - 14, abs=1) and rows.max() == pytest.approx(109 + 14, abs=1)
    assert cols.min() == pytest.approx(79.5 - 42, abs=1) and cols.max() == pytest.approx(79.5 + 42, abs=1)
    assert r.boxes[0].tolist() == [cols.min(), rows.min(), cols.max(), rows.max()]
    # no disc to place a window on: the whole-slice answer stands
    whole = YoloResult(("disc", "herniation", "thecal sac"), masks=np.zeros((0, 200, 200), bool))
    assert refined_segmentations(_WindowSegModel(), [np.zeros((200, 200))], [A], [whole]) == [whole]


class _WholeSliceModel:
    """A whole-slice model that answers a fixed disc mask per slice (by its first pixel's value) and
    records which slices it was asked about."""

    names = ("disc", "herniation", "thecal sac")

    def __init__(self, discs):
        self.discs, self.asked = discs, []

    def predict_many(self, images, *args, **kwargs):
        out = []
        for x in images:
            k = int(x[0, 0])
            self.asked.append(k)
            m = self.discs[k]
            out.append(YoloResult(self.names, np.zeros((1, 4)), np.array([0.9]), np.zeros(1, int), masks=m[None])
                       if m.any() else YoloResult(self.names, masks=np.zeros((0, *m.shape), bool)))
        return out


class _PlacementRecorder(_WindowSegModel):
    """The window model above, recording the centre of every window it is given; ``empty``: the
    centres (rounded) at which it finds nothing."""

    def __init__(self, empty=()):
        self.centres, self.empty = [], set(empty)

    def predict_windows(self, pairs, conf=0.25, max_det=30):
        out = super().predict_windows(pairs, conf, max_det)
        for i, (_, crop) in enumerate(pairs):
            self.centres.append((round(crop.cx), round(crop.cy)))
            if self.centres[-1] in self.empty:
                out[i] = YoloResult(self.names, masks=np.zeros((0, crop.size, crop.size), bool))
        return out


def test_one_disc_needs_the_whole_slice_model_on_its_central_slice_only():
    """The slices of one disc: the whole-slice model runs on the central slice; each other slice's
    window is placed from its neighbour's window mask towards the centre (it moves with the disc)."""
    from SpineAssistLib.models.crops import disc_segmentations

    A = np.eye(4)
    A[:3, 0], A[:3, 1] = [0.0, 1.0, 0.0], [1.0, 0.0, 0.0]     # canonical: rows run back, columns to the left
    images = [np.full((200, 200), k, np.float32) for k in range(5)]
    discs = [np.zeros((200, 200), bool) for _ in range(5)]
    for m in discs:
        m[80:110, 30:130] = True
    whole, window = _WholeSliceModel(discs), _PlacementRecorder()
    segs = disc_segmentations(whole, window, images, [A] * 5)
    assert whole.asked == [2]                                   # the central slice only
    assert all(s.mask_of("disc").any() for s in segs)
    # centre: from the whole-slice disc's posterior margin (row 109). The window model's disc is the
    # window's central third of rows (28 mm around its centre, so its margin is 14 mm behind it): each
    # slice further out, both sides in one batch, has its window 14 mm further back than its neighbour's
    assert window.centres[0] == (80, 109)
    c1, c2 = window.centres[1:3], window.centres[3:5]
    assert c1[0] == c1[1] and c2[0] == c2[1] and c1[0][0] == c2[0][0] == 80
    assert c1[0][1] - 109 == pytest.approx(14, abs=1.5) and c2[0][1] - c1[0][1] == pytest.approx(14, abs=1.5)
    assert disc_segmentations(whole, window, [], []) == []


def test_a_slice_whose_window_shows_no_disc_falls_back_to_its_own_whole_slice_segmentation():
    from SpineAssistLib.models.crops import disc_segmentations

    A = np.eye(4)
    A[:3, 0], A[:3, 1] = [0.0, 1.0, 0.0], [1.0, 0.0, 0.0]
    images = [np.full((200, 200), k, np.float32) for k in range(3)]
    discs = [np.zeros((200, 200), bool) for _ in range(3)]
    for m in discs:
        m[80:110, 30:130] = True
    discs[0][:] = False                                         # slice 0: the whole-slice model finds nothing
    whole, window = _WholeSliceModel(discs), _PlacementRecorder(empty={(80, 122)})
    segs = disc_segmentations(whole, window, images, [A] * 3)
    assert whole.asked == [1, 0, 2]                             # the neighbours' windows showed no disc
    assert not segs[0].mask_of("disc").any()                    # nothing anywhere: the whole-slice answer
    assert segs[2].mask_of("disc").any()                        # its own whole-slice disc placed a window
    assert window.centres == [(80, 109), (80, 122), (80, 122), (80, 109)]


def test_mask_regions_centroids_and_erosion_equal_scipys():
    """``models.imaging``'s OpenCV mask steps give scipy.ndimage's answers (its default structure:
    edge neighbours): the same region numbers, centroids and erosion, on random masks of every density."""
    from scipy import ndimage

    from SpineAssistLib.models.imaging import erode, label_regions, region_centroids

    rng = np.random.default_rng(7)
    for _ in range(60):
        m = rng.random((int(rng.integers(3, 120)), int(rng.integers(3, 120)))) < rng.uniform(0.1, 0.8)
        labels, n = label_regions(m)
        want, want_n = ndimage.label(m)
        assert n == want_n and np.array_equal(labels, want)
        _, n2, centroids = region_centroids(m)
        if n:
            np.testing.assert_allclose(centroids, ndimage.center_of_mass(m, want, range(1, n + 1)), atol=1e-9)
        for it in (1, 2):
            assert np.array_equal(erode(m, it), ndimage.binary_erosion(m, iterations=it))
    assert label_regions(np.zeros((4, 4), bool))[1] == 0 and region_centroids(np.zeros((4, 4)))[2].shape == (0, 2)
    with pytest.raises(ValueError, match="2D"):
        label_regions(np.zeros((2, 2, 2)))
