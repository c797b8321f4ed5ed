"""The YOLO wrappers (models.yolo) call the networks directly: the same answers as ultralytics'
predictor, batches equal to one-by-one, and no torchvision import."""

from __future__ import annotations

import numpy as np
import pytest

from SpineAssistLib.anatomy import DISC_LABELS


def test_running_the_models_does_not_import_torchvision(repo_root):
    """torchvision's import pulls in torch._dynamo: seconds of every run. Ultralytics imports it for
    its NMS warm-up and the classifier's transforms; inference here needs neither."""
    import subprocess
    import sys

    code = ("import sys, numpy as np; from SpineAssistLib.models import load_model; "
            "[load_model(n, device='cpu').predict(np.random.rand(96, 96) * 500) for n in "
            "('sag_vertebra_pose', 'sag_pfirrmann_cls', 'ax_disc_seg', 'ax_msu_pose')]; "
            "print(sorted(m for m in ('torchvision', 'torch._dynamo') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=repo_root, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_classifier_gives_ultralytics_probabilities(phantom_slices):
    """The classifier is called directly (no torchvision transforms): the same probabilities as
    ultralytics' predictor, for crops smaller, larger, and not square."""
    import torchvision  # noqa: F401 - ultralytics' classify predictor needs it (here only)

    from SpineAssistLib.models import load_model

    sag = phantom_slices["sag_images"][0]
    model = load_model("sag_pfirrmann_cls", device="cpu")
    crops = [sag[100:164, 100:164], sag[80:240, 90:250], sag[100:190, 60:200], sag[50:250, 120:180]]
    ours = model.predict_many(crops)
    for crop, r in zip(crops, ours):
        ref = model.predict_ultralytics([crop])[0].probs
        np.testing.assert_allclose(r.probs, ref, atol=1e-5)
        assert r.top_class == int(np.argmax(ref))
    assert len({r.top_class for r in ours}) >= 1 and all(r.probs.shape == (5,) for r in ours)


@pytest.mark.parametrize("runtime", ["onnx", "torch"])
@pytest.mark.parametrize("name", ["sag_vertebra_pose", "sag_disc_corners", "ax_disc_seg", "ax_disc_window_seg",
                                  "ax_msu_pose"])
def test_the_direct_network_call_gives_ultralytics_answers(phantom_slices, name, runtime, monkeypatch):
    """Detect, segment and pose run the network (ONNX Runtime or torch) with their own letterbox,
    NMS and mask and keypoint scaling, without ultralytics' predictor: the same boxes, scores,
    classes, masks and keypoints as its predictor, on square and non-square slices, with several
    answers per slice and with none."""
    monkeypatch.setenv("SPINEASSIST_CPU_RUNTIME", runtime)
    from SpineAssistLib.models import load_model
    from SpineAssistLib.models.crops import axial_disc_crop, axial_segmentation_crop, sagittal_disc_crop
    from SpineAssistLib.geometry import pixel_spacing_xy, slice_affine
    from SpineAssistLib.models.imaging import normalize_slice, to_uint8

    st = phantom_slices
    if name.startswith("sag"):
        k = int(st["sag_mid"])
        image, labels, affine = st["sag_images"][k], st["sag_labels"][k], slice_affine(st["sag_affine"], k, "slice,row,col")
    else:
        k = max(range(len(st["ax_labels"])), key=lambda i: np.isin(st["ax_labels"][i], list(DISC_LABELS.values())).sum())
        image, labels, affine = st["ax_images"][k], st["ax_labels"][k], st["ax_affines"][k]
    place = {"sag_disc_corners": sagittal_disc_crop, "ax_disc_window_seg": axial_segmentation_crop,
             "ax_msu_pose": axial_disc_crop}.get(name)
    if place is not None:    # a window model sees a window around a disc, as ``predict_windows`` cuts it
        disc = labels == DISC_LABELS["L4-L5"] if name.startswith("sag") else np.isin(labels, list(DISC_LABELS.values()))
        image = to_uint8(place(disc, pixel_spacing_xy(affine, "row,col,slice")).image(normalize_slice(image)))
    model = load_model(name, device="cpu")
    assert model.runtime == runtime
    cases = [[image, np.ascontiguousarray(image[::-1])], [np.ascontiguousarray(image[20:200, 10:])],
             [np.zeros((120, 90))]]
    found = 0
    for images in cases:
        for conf in (0.25, 0.05):
            ours = model.predict_many(images, conf=conf)
            ref = model.predict_ultralytics(images, conf=conf)
            for a, b in zip(ours, ref):
                assert len(a) == len(b)
                found += len(a)
                np.testing.assert_allclose(a.boxes, b.boxes, atol=1e-3)
                np.testing.assert_allclose(a.scores, b.scores, atol=1e-5)
                assert (a.classes == b.classes).all()
                if model.task == "segment":
                    assert a.masks.shape == b.masks.shape and (not a.masks.size or (a.masks == b.masks).mean() > 0.9999)
                if model.task == "pose":
                    np.testing.assert_allclose(a.keypoints, b.keypoints, atol=1e-3)
                    np.testing.assert_allclose(a.keypoint_scores, b.keypoint_scores, atol=1e-5)
    assert found >= 2
    assert not len(model.predict_many([np.zeros((120, 90))], conf=0.9)[0])


def test_a_batch_of_slices_gets_the_answers_of_one_by_one(phantom_slices):
    from SpineAssistLib.models import load_model

    sag = phantom_slices["sag_images"][0]
    for name, images in (("ax_disc_seg", list(phantom_slices["ax_images"][:3])),
                         ("sag_vertebra_pose", [sag, np.ascontiguousarray(sag[:, ::-1]), sag])):
        model = load_model(name, device="cpu")
        one = [model.predict(x, max_det=1) for x in images]
        many = model.predict_many(images, max_det=1)
        assert [len(r) for r in many] == [len(r) for r in one] and sum(len(r) for r in one) >= 1
        for a, b in zip(one, many):
            np.testing.assert_allclose(a.boxes, b.boxes, atol=0.01)
            if a.keypoints is not None:
                np.testing.assert_allclose(a.keypoints, b.keypoints, atol=0.01)
            if a.masks is not None:
                assert (a.masks == b.masks).all()
    with pytest.raises(ValueError, match="one shape"):
        model.predict_many([images[0], images[0][:100]])
