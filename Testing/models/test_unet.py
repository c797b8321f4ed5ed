"""The disc U-Net (models.unet): MONAI's network rebuilt without MONAI, regions of a slice, and the
walk over a sagittal stack from the centre out."""

from __future__ import annotations

import numpy as np


def test_the_monai_free_unet_is_monais_unet():
    """Inference rebuilds MONAI's U-Net from torch.nn (no 7 s MONAI import): same keys, same output."""
    import torch

    from SpineAssistLib.models.networks import build_inference_unet, build_unet
    from SpineAssistLib.resources import resource_path

    torch.manual_seed(3)
    monai_net, ours = build_unet().eval(), build_inference_unet().eval()
    assert list(monai_net.state_dict()) == list(ours.state_dict())
    x = torch.rand(2, 1, 96, 128)
    for state in (monai_net.state_dict(), torch.load(resource_path("Models", "sag_disc_unet.pt"), weights_only=True)):
        monai_net.load_state_dict(state)
        ours.load_state_dict(state, strict=True)
        with torch.inference_mode():
            assert torch.equal(monai_net(x), ours(x))


def test_loading_the_disc_unet_does_not_import_monai(repo_root):
    import subprocess
    import sys

    code = ("import sys; from SpineAssistLib.models import load_model; "
            "import numpy as np; load_model('sag_disc_unet', device='cpu').predict(np.random.rand(64, 64)); "
            "print('monai' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=repo_root, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_beyond_the_central_slices_the_unet_sees_only_the_box_around_their_discs():
    """Slices outside the centre are run on the box around the central slices' discs plus a margin in mm."""
    from SpineAssistLib.models.unet import UNetResult, segment_sagittal_stack

    calls = []

    class Unet:
        def predict(self, image, roi=None):
            calls.append(roi)
            m = np.zeros(image.shape, bool)
            m[20:30, 10:16] = True                            # discs in rows 20-29, cols 10-15
            m[40, 30] = len(calls) == 2                       # ... and one more pixel on a central slice
            if roi is not None:
                inside = np.zeros(image.shape, bool)
                inside[roi] = True
                m &= inside
            return UNetResult(m, m.astype(np.float32))

    voxels = np.zeros((9, 64, 48), np.float32)
    masks = segment_sagittal_stack(Unet(), voxels, (2.0, 0.5), margin_mm=10.0)
    assert calls[:5] == [None] * 5 and len(calls) == 9       # the five central slices whole, then 4 more
    # 10 mm = 5 rows (2 mm) or 20 columns (0.5 mm) around rows 20-40, cols 10-30
    assert calls[5:] == [(slice(15, 46), slice(0, 48))] * 4
    assert masks.any(axis=(1, 2)).all()
    calls.clear()
    segment_sagittal_stack(Unet(), voxels, (2.0, 0.5), margin_mm=None)
    assert calls == [None] * 9                                # margin None: every slice whole


def test_the_unet_runs_on_a_region_of_a_slice_normalised_whole():
    import torch

    from SpineAssistLib.models.imaging import normalize_slice
    from SpineAssistLib.models.networks import build_unet
    from SpineAssistLib.models.unet import UNetModel

    torch.manual_seed(0)
    unet = UNetModel.__new__(UNetModel)                          # a random torch network, no weights file
    unet.name, unet.device, unet._onnx, unet._net = "test", "cpu", None, build_unet().eval()
    image = np.random.default_rng(1).uniform(0, 900, (40, 56)).astype(np.float32)
    image[:, :8] = 5000.0                                      # bright outside the region: sets the whole slice's range
    roi = (slice(4, 36), slice(16, 48))
    r = unet.predict(image, roi=roi)
    assert r.probability.shape == image.shape and not r.probability[:4].any() and not r.probability[:, :16].any()
    with torch.inference_mode():
        x = torch.from_numpy(normalize_slice(image)[roi].astype(np.float32))[None, None]
        expected = torch.softmax(unet.net(x), dim=1)[0, 1].numpy()
    np.testing.assert_allclose(r.probability[roi], expected, atol=1e-6)
