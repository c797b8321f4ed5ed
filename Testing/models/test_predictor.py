"""The models' protocol: the bundled wrappers and the tests' oracle models answer as the pipeline asks."""

from __future__ import annotations

import numpy as np
import pytest

from SpineAssistLib.findings import ModelInfo
from SpineAssistLib.models.orientation import Oriented, SliceOrientation
from SpineAssistLib.models.predictor import BatchPredictor, Predictor, WindowPredictor
from SpineAssistLib.models.unet import UNetModel
from SpineAssistLib.models.yolo import YoloModel
from SpineAssistLib.pipeline.assess import MODEL_ROLES, ModelSet
from support import oracle_models


def test_the_bundled_wrappers_satisfy_every_role():
    assert issubclass(UNetModel, Predictor)
    for protocol in (Predictor, BatchPredictor, WindowPredictor):
        assert issubclass(YoloModel, protocol)
    assert not issubclass(UNetModel, WindowPredictor)      # the U-Net reads whole slices only


def test_the_oracle_models_satisfy_their_roles():
    for cls in (oracle_models.OracleUNet, oracle_models.OracleVertebraPose, oracle_models.OraclePfirrmann):
        assert issubclass(cls, Predictor)
    for cls in (oracle_models.OracleAxialSeg, oracle_models.OracleMSUPose, oracle_models.OracleDiscCorners):
        assert issubclass(cls, WindowPredictor)
    assert issubclass(oracle_models.OracleAxialSeg, BatchPredictor)


def test_a_model_set_refuses_a_model_that_cannot_answer_its_role():
    class OnlyPredict:
        def predict(self, image: np.ndarray, *args, **kwargs):
            return None

    info = [ModelInfo("x", "0" * 64, "1")]
    ModelSet({"sag_vertebra_pose": OnlyPredict()}, info)                     # a Predictor is enough here
    with pytest.raises(TypeError, match="'sag_disc_corners' must be a WindowPredictor"):
        ModelSet({"sag_disc_corners": OnlyPredict()}, info)
    with pytest.raises(TypeError, match="'sag_disc_unet' must be a Predictor"):
        ModelSet({"sag_disc_unet": object()}, info)
    assert set(MODEL_ROLES) == {"sag_disc_unet", "sag_vertebra_pose", "sag_disc_corners", "sag_pfirrmann_cls",
                                "sag_disc_grades", "sag_canal_unet", "ax_disc_seg", "ax_disc_window_seg",
                                "ax_msu_pose"}


def test_an_oriented_model_is_still_a_batch_predictor():
    class Many:
        def predict(self, image, *args, **kwargs):
            return image.shape

        def predict_many(self, images, *args, **kwargs):
            return [i.shape for i in images]

    flipped = Oriented(Many(), SliceOrientation(transpose=True, flip_rows=False, flip_cols=False))
    assert isinstance(flipped, BatchPredictor)
    assert flipped.predict_many([np.zeros((2, 3))]) == [(3, 2)]
