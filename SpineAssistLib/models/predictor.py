"""What the pipeline needs of a model, as typing protocols: the bundled YOLO and U-Net wrappers
satisfy them, and so do the tests' oracle models (which answer from a phantom's truth) and any
model a site plugs in.

A model is a ``Predictor`` (one 2D slice in, one result out); the YOLO wrappers are also
``BatchPredictor`` (several slices in one call) and ``WindowPredictor`` (crops around each disc,
each with its ``models.crops.Crop``). Results are ``models.yolo.YoloResult`` for the YOLO tasks and
``models.unet.UNetResult`` for the U-Net, in the input image's pixels (x = column, y = row).

Usage::

    from SpineAssistLib.models.predictor import Predictor, WindowPredictor
    def grade(classifier: Predictor, crop: np.ndarray) -> int:
        return int(classifier.predict(crop).probs.argmax())
"""

from __future__ import annotations

from typing import Any, Protocol, Sequence, runtime_checkable

import numpy as np


@runtime_checkable
class Predictor(Protocol):
    """A model that answers for one 2D image (a slice or a crop)."""

    def predict(self, image: np.ndarray, *args: Any, **kwargs: Any) -> Any: ...


@runtime_checkable
class BatchPredictor(Predictor, Protocol):
    """A model that also answers for several images in one call, in order."""

    def predict_many(self, images: Sequence[np.ndarray], *args: Any, **kwargs: Any) -> list[Any]: ...


@runtime_checkable
class WindowPredictor(Protocol):
    """A model that answers for windows cut around each disc: ``(window image, crop)`` pairs in,
    one result per window out, in the window's pixels."""

    def predict_windows(self, pairs: Sequence[tuple[np.ndarray, Any]], *args: Any, **kwargs: Any) -> list[Any]: ...


__all__ = ["BatchPredictor", "Predictor", "WindowPredictor"]
