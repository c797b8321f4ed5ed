"""Training-set builders (training.datasets): YOLO label files from phantoms, the Pfirrmann classifier's
brightness-scaled crops, tissue-signal jitter, and the label-line parser."""

from __future__ import annotations

import json

import numpy as np
import pytest
from support.toy_study import toy_study as _toy_study

from SpineAssistLib.models.catalog import MODEL_DEFS


def test_phantom_builder_writes_parseable_yolo_labels(tmp_path):
    from SpineAssistLib.training.datasets import SET_MODELS, build_from_phantoms, parse_label_line

    result = build_from_phantoms([_toy_study(1), _toy_study(2)], tmp_path, copies=1, val_fraction=0.5)
    assert set(result) == set(SET_MODELS) == set(MODEL_DEFS) - {"sag_disc_grades"}
    pose = tmp_path / "sag_vertebra_pose"
    yaml = (pose / "data.yaml").read_text()
    assert "kpt_shape: [4, 3]" in yaml and "1: sacrum" in yaml
    lines = (pose / "labels" / "train" / "s000001_sag01_0.txt").read_text().splitlines()
    assert len(lines) == 3          # L4, L5, sacrum
    for line in lines:
        obj = parse_label_line(line, 4)
        assert 0 <= obj["box"].min() and obj["box"].max() <= 1
        assert np.all((obj["keypoints"][:, :2] >= 0) & (obj["keypoints"][:, :2] <= 1))
    l4 = parse_label_line(lines[0], 4)
    # L4's anterior-superior corner at row 11, column 21 of a 96 x 80 image: pixel centres (x + 0.5) / W
    assert l4["keypoints"][0, :2] == pytest.approx([21.5 / 80, 11.5 / 96], abs=1e-6)
    sacrum = parse_label_line(lines[2], 4)
    assert sacrum["class"] == 1 and list(sacrum["keypoints"][2:, 2]) == [0, 0]   # no inferior corners
    seg = (tmp_path / "ax_disc_seg" / "labels" / "train" / "s000001_ax00_0.txt").read_text().splitlines()
    assert sorted({parse_label_line(s)["class"] for s in seg}) == [0, 1, 2]
    msu = parse_label_line((tmp_path / "ax_msu_pose" / "labels" / "train" / "s000001_ax00_0.txt").read_text(), 5)
    k = msu["keypoints"]
    assert k[0, 0] < k[1, 0]        # facets named by image side: the image-left one first
    assert k[3, 2] == 2 and np.all((k[:, :2] >= 0) & (k[:, :2] <= 1))
    assert (tmp_path / "sag_pfirrmann_cls" / "train" / "grade2").is_dir()
    assert any((tmp_path / "sag_pfirrmann_cls" / "train" / "grade4").iterdir())
    with np.load(next((tmp_path / "sag_disc_unet" / "train").glob("*.npz"))) as z:
        assert z["image"].dtype == np.float32 and 0 <= z["image"].min() and z["image"].max() <= 1
        assert set(np.unique(z["mask"])) == {0, 1}


def test_brightness_scaled_pfirrmann_crops_change_only_the_classifier_set(tmp_path):
    """--pfirrmann-brightness: the classifier's training crops come from rescaled slices (their own
    random stream); every other training set, and the classifier's validation crops, stay the same."""
    from PIL import Image

    from SpineAssistLib.training.datasets import build_from_phantoms

    studies = [_toy_study(1), _toy_study(2)]
    build_from_phantoms(studies, tmp_path / "plain", copies=2, val_fraction=0.5)
    build_from_phantoms(studies, tmp_path / "scaled", copies=2, val_fraction=0.5, pfirrmann_brightness=(0.5, 0.7))

    def files(root):     # data.yaml names its own folder
        return {p.relative_to(root): p.read_bytes().replace(str(root).encode(), b"ROOT")
                for p in root.rglob("*") if p.is_file() and p.name != "datasets.json"}

    plain, scaled = files(tmp_path / "plain"), files(tmp_path / "scaled")
    assert plain.keys() == scaled.keys()
    differ = {k for k in plain if plain[k] != scaled[k]}
    assert differ and all(k.parts[:2] == ("sag_pfirrmann_cls", "train") for k in differ)
    for k in differ:     # darker by the factor (0.5-0.7): the disc's grey falls, its place does not move
        a = np.asarray(Image.open(tmp_path / "plain" / k), float)
        b = np.asarray(Image.open(tmp_path / "scaled" / k), float)
        assert a.shape == b.shape and 0.45 * a.max() <= b.max() <= 0.75 * a.max()
    assert json.loads((tmp_path / "scaled" / "datasets.json").read_text())["pfirrmann_brightness"] == [0.5, 0.7]


def test_tissue_jitter_widens_only_the_background_tissue_signals():
    """--tissue-jitter: training phantoms' fat, marrow, muscle ... signals vary far more than the
    phantom's own +-8 % (other scanners and patients); CSF and the disc keep theirs (grades)."""
    from SpineAssistLib.cli.train import _training_overrides
    from SpineAssistLib.phantom.params import BACKGROUND_TISSUES, TISSUE_SIGNAL, jittered_tissue_signal, sample_params

    draws = [jittered_tissue_signal(seed, 0.25) for seed in range(1000, 1060)]
    assert draws[0] == jittered_tissue_signal(1000, 0.25)                       # from the seed alone
    assert all(set(d) == set(BACKGROUND_TISSUES) for d in draws)
    ratios = np.array([[d[t] / TISSUE_SIGNAL[t] for t in ("fat", "marrow", "muscle")] for d in draws])
    assert ratios.min() >= np.exp(-0.5) - 1e-9 and all(max(d.values()) <= 0.98 for d in draws)
    assert ratios[:, 1].max() > 1.25 and ratios[:, 0].min() < 0.8             # beyond the phantom's +-20 % clip
    p = sample_params(1000, **_training_overrides(1000, None, 0.25))
    assert p.signal("marrow") == pytest.approx(draws[0]["marrow"])
    assert p.signal("csf") == 1.0 and p.signal("nucleus") == sample_params(1000).signal("nucleus")
    both = _training_overrides(1000, 0.5, 0.25)
    assert set(both) == {"msu", "tissue_signal"} and _training_overrides(1000, None, None) is None


def test_label_line_parser_rejects_wrong_counts():
    from SpineAssistLib.training.datasets import parse_label_line

    with pytest.raises(ValueError, match="needs 16 numbers"):
        parse_label_line("0 0.5 0.5 0.1 0.1 0.2 0.2 2", 4)
    with pytest.raises(ValueError, match="even count"):
        parse_label_line("0 0.1 0.2 0.3")
