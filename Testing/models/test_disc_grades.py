"""sag_disc_grades (models.disc_grades): the shipped weights and their manifest entry, the predictor's
outputs on a drawn disc, the thresholds, and one crop function for training and inference."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from SpineAssistLib.errors import ModelError
from SpineAssistLib.models import disc_grades as G

REPO = Path(__file__).resolve().parents[2]


def _drawn_disc(shape=(200, 160), shift=0) -> tuple[np.ndarray, np.ndarray]:
    """Return (three sagittal slices (3, rows, cols) in scanner units, the disc's mask on the middle one):
    a bright disc 40 px deep and 10 px high between two grey bodies, a brighter canal behind them."""
    rows, cols = np.mgrid[0:shape[0], 0:shape[1]]
    img = np.full(shape, 80.0)
    img[(rows >= 40) & (rows < 95) & (cols >= 40) & (cols < 82)] = 300.0        # upper body
    img[(rows >= 105) & (rows < 160) & (cols >= 40) & (cols < 82)] = 300.0      # lower body
    disc = (((rows - 100) / 5.0) ** 2 + ((cols - 61) / 20.0) ** 2) <= 1.0
    img[disc] = 900.0
    img[(cols >= 90) & (cols < 100)] = 1000.0                                     # canal
    slices = np.stack([img * 0.9 + shift, img, img * 1.1])
    return slices, disc


@pytest.fixture(scope="module")
def model():
    from SpineAssistLib.models import load_model

    return load_model("sag_disc_grades", device="cpu")


def test_shipped_weights_match_the_manifest_and_are_small():
    from SpineAssistLib.models import registry

    spec = registry.model_spec("sag_disc_grades")
    path = registry.verified_path(spec)
    assert registry.sha256_file(path) == spec.sha256 and path.stat().st_size == spec.size_bytes
    assert spec.size_bytes < 2 * 1024 * 1024
    assert spec.task == "disc-grades" and spec.input_size == G.INPUT_SIZE and spec.classes == G.GRADINGS
    entry = next(m for m in json.loads((REPO / "Resources" / "Models" / "manifest.json").read_text())["models"]
                 if m["name"] == "sag_disc_grades")
    assert set(entry["thresholds"]) == set(G.THRESHOLD_NAMES) == {"modic_change", *G.BINARY_GRADINGS}
    assert all(0.0 < t < 1.0 for t in entry["thresholds"].values())
    assert entry["training"]["command"].startswith("spineassist train sag_disc_grades")
    held_out = set(entry["training"]["data"]["held_out_left_out"])
    assert len(held_out) == 12 and not held_out & {p for ps in entry["training"]["data"]["patients"].values() for p in ps}
    # the thresholds' cross-validation folds: disjoint, every training patient once, no held-out one
    folds = entry["training"]["cross_validation_folds"]
    in_folds = [p for f in folds for p in f]
    assert len(folds) == 5 and len(in_folds) == len(set(in_folds))
    assert set(in_folds) == set(entry["training"]["data"]["patients"]["train"]) and not held_out & set(in_folds)


def test_the_predictor_grades_each_disc_with_the_manifest_thresholds(model):
    from SpineAssistLib.models import registry

    assert model.runtime == "onnx" and model.thresholds == registry.model_spec("sag_disc_grades").thresholds
    slices, disc = _drawn_disc()
    crop = G.disc_grades_crop(slices, disc, (0.5, 0.5))
    assert crop.shape == (3, G.INPUT_SIZE, G.INPUT_SIZE) and crop.dtype == np.float32
    assert 0.0 <= crop.min() and crop.max() <= 1.0
    out = model.predict(np.stack([crop, crop[::-1]]))
    assert len(out) == 2
    for grades in out:
        assert tuple(grades) == G.GRADINGS
        modic, probs = grades["modic"]
        assert modic in (0, 1, 2, 3) and len(probs) == 4 and sum(probs) == pytest.approx(1.0, abs=1e-4)
        assert modic == G.modic_type(probs, model.thresholds["modic_change"])
        for name in G.BINARY_GRADINGS:
            present, p = grades[name]
            assert isinstance(present, bool) and 0.0 <= p <= 1.0
            assert present == (p >= model.thresholds[name])
    assert model.predict(crop)[0] == out[0]                     # one crop (3, H, W) as a batch of one
    assert model.predict([]) == []


def test_onnx_runtime_and_torch_give_the_same_probabilities(model, monkeypatch):
    from SpineAssistLib.models import load_model

    slices, disc = _drawn_disc()
    crop = G.disc_grades_crop(slices, disc, (0.5, 0.5))
    monkeypatch.setenv("SPINEASSIST_CPU_RUNTIME", "torch")
    torch_model = load_model("sag_disc_grades", device="cpu")
    assert torch_model.runtime == "torch"
    for a, b in zip(model.probabilities(crop), torch_model.probabilities(crop)):
        np.testing.assert_allclose(a, b, atol=1e-4)


def test_thresholds_decide_present_or_absent():
    modic = np.array([[0.25, 0.05, 0.6, 0.1]])          # a change: 1 - 0.25 = 0.75
    binary = np.array([[0.30, 0.30, 0.30, 0.30, 0.30]])
    low = G.grades_from_probabilities(modic, binary, {n: 0.25 for n in G.THRESHOLD_NAMES})[0]
    high = G.grades_from_probabilities(modic, binary, {n: 0.35 for n in G.BINARY_GRADINGS} | {"modic_change": 0.8})[0]
    at = G.grades_from_probabilities(modic, binary, {n: 0.30 for n in G.BINARY_GRADINGS} | {"modic_change": 0.75})[0]
    assert low["modic"] == (2, (0.25, 0.05, 0.6, 0.1)) and at["modic"][0] == 2
    assert high["modic"][0] == 0                          # 0.75 < 0.8: no change called, though type 2 is likelier
    assert all(low[n] == (True, 0.3) and high[n] == (False, 0.3) and at[n][0] for n in G.BINARY_GRADINGS)
    # the most probable of types 1-3 once a change is called, even where type 0 is the likeliest single type
    assert G.modic_type([0.4, 0.35, 0.05, 0.2], 0.5) == 1 and G.modic_type([0.4, 0.35, 0.05, 0.2], 0.7) == 0


def test_a_model_given_other_thresholds_applies_them(model):
    slices, disc = _drawn_disc()
    crop = G.disc_grades_crop(slices, disc, (0.5, 0.5))
    always = G.DiscGradesModel(model.weights, "cpu", thresholds={n: 0.0 for n in G.BINARY_GRADINGS})
    never = G.DiscGradesModel(model.weights, "cpu", thresholds={n: 1.0 for n in G.BINARY_GRADINGS})
    assert all(always.predict(crop)[0][n][0] for n in G.BINARY_GRADINGS)
    assert not any(never.predict(crop)[0][n][0] for n in G.BINARY_GRADINGS)
    with pytest.raises(ModelError, match="herniation.*in \\[0, 1\\]"):
        G.DiscGradesModel(model.weights, "cpu", thresholds={"herniation": 1.5})
    with pytest.raises(ModelError, match="not a binary grading"):
        G.DiscGradesModel(model.weights, "cpu", thresholds={"modic": 0.5})
    few = G.DiscGradesModel(model.weights, "cpu", thresholds={"herniation": 0.2})
    assert few.thresholds == {n: 0.5 for n in G.THRESHOLD_NAMES} | {"herniation": 0.2}


def test_training_and_inference_cut_the_same_window():
    """The training code's input of a disc (without its random changes) is the predictor's crop."""
    from SpineAssistLib.anatomy import DISC_LABELS
    from SpineAssistLib.models.imaging import normalize_slice
    from SpineAssistLib.training import disc_grades as T

    slices, disc = _drawn_disc()
    volume = np.stack([slices[0], slices[0], slices[0], slices[1], slices[2], slices[2], slices[2]])
    labels = np.zeros(volume.shape, np.uint8)
    labels[:, disc] = DISC_LABELS["L4-L5"]
    sample = T.DiscSample("1", "L4-L5", np.stack([normalize_slice(s) for s in volume]), labels, mid=3,
                          spacing=(0.5, 0.5), slice_mm=1.0, raw=volume)
    idx = G.neighbour_slices(len(volume), 3, 1.0)
    assert idx == (0, 3, 6)                           # 3 mm either side at 1 mm a slice
    inference = G.disc_grades_crop(volume[list(idx)], disc, (0.5, 0.5))
    np.testing.assert_array_equal(T.evaluation_input(sample), inference)
    sample.raw = None                                 # training's path: slices normalised once, then cut
    np.testing.assert_array_equal(T.evaluation_input(sample), inference)

    class Still:                                      # a random stream that changes nothing
        def random(self):
            return 0.99

        def integers(self, low, high=None):
            return 3

        def uniform(self, low, high, size=None):
            return np.zeros(size) if size else 0.0

    original = T.augment_window
    try:
        T.augment_window = lambda x, rng: x
        np.testing.assert_allclose(T.training_input(sample, Still()), inference, atol=1e-6)
    finally:
        T.augment_window = original


@pytest.mark.parametrize("n, index, slice_mm, expected", [
    (20, 10, 1.0, (7, 10, 13)), (20, 10, 3.3, (9, 10, 11)), (20, 10, 5.0, (9, 10, 11)),
    (20, 0, 4.0, (0, 0, 1)), (20, 19, 1.5, (17, 19, 19)), (1, 0, 4.0, (0, 0, 0)),
])
def test_neighbour_slices_lie_3_mm_away(n, index, slice_mm, expected):
    assert G.neighbour_slices(n, index, slice_mm) == expected


def test_bad_inputs_say_what_was_expected(model):
    slices, disc = _drawn_disc()
    with pytest.raises(ValueError, match="3 sagittal slices"):
        G.disc_grades_crop(slices[:2], disc, (0.5, 0.5))
    with pytest.raises(ValueError, match="one shape"):
        G.disc_grades_crop(slices, disc[:-1], (0.5, 0.5))
    with pytest.raises(ValueError, match="at least 20 are needed"):
        G.disc_grades_crop(slices, np.zeros_like(disc), (0.5, 0.5))
    with pytest.raises(ValueError, match="crops must be"):
        model.predict(np.zeros((2, 4, 112, 112), np.float32))
    with pytest.raises(ValueError, match="NaN"):
        model.predict(np.full((3, 112, 112), np.nan, np.float32))
    with pytest.raises(ValueError, match="outside a stack of 5"):
        G.neighbour_slices(5, 5, 1.0)
    with pytest.raises(ValueError, match="must be positive"):
        G.neighbour_slices(5, 2, 0.0)


def test_other_crop_sizes_and_uint8_are_taken(model):
    slices, disc = _drawn_disc()
    crop = G.disc_grades_crop(slices, disc, (0.5, 0.5))
    as_uint8 = np.rint(crop * 255).astype(np.uint8)
    a, b = model.probabilities(crop), model.probabilities(as_uint8)
    np.testing.assert_allclose(a[0], b[0], atol=0.02)
    assert G.as_batch(np.zeros((96, 96))).shape == (1, 3, G.INPUT_SIZE, G.INPUT_SIZE)
