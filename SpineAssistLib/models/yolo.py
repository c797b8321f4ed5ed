"""Thin wrappers over ultralytics YOLO (detect, segment, pose, classify) returning plain numpy.

Ultralytics is imported inside functions, after ``configure_offline()`` has pointed its settings,
font and matplotlib folders at a project-owned cache, so nothing is downloaded or written to the
user's home.

Usage::

    from SpineAssistLib.models import load_model
    pose = load_model("sag_vertebra_pose")            # verifies the SHA-256 first
    r = pose.predict(sagittal_slice)                   # raw uint16 or float 2D array
    r.boxes, r.scores, r.classes, r.keypoints          # pixels: x = column, y = row
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .device import run_with_fallback, select_device
from .imaging import to_bgr, to_uint8

_CONFIGURED: Path | None = None


def _cache_root() -> Path:
    repo = Path(__file__).resolve().parents[2]
    candidate = repo / ".cache"
    if (repo / "pyproject.toml").is_file() and os.access(repo, os.W_OK):
        return candidate
    return Path(tempfile.gettempdir()) / "spineassist-cache"


def configure_offline() -> Path:
    """Return the folder ultralytics uses for settings, after making it work offline.

    Sets ``YOLO_OFFLINE=1``, ``YOLO_CONFIG_DIR`` (holding ``Ultralytics/Arial.ttf``, a copy of
    matplotlib's DejaVu Sans, so no font is fetched) and ``MPLCONFIGDIR``. Call before importing
    ultralytics; calling again is free.
    """
    global _CONFIGURED
    if _CONFIGURED is not None:
        return _CONFIGURED
    root = Path(os.environ.get("YOLO_CONFIG_DIR") or _cache_root() / "ultralytics")
    font_dir = root / "Ultralytics"
    font_dir.mkdir(parents=True, exist_ok=True)
    os.environ["YOLO_OFFLINE"] = "1"
    os.environ["YOLO_CONFIG_DIR"] = str(root)
    os.environ.setdefault("MPLCONFIGDIR", str(root.parent / "matplotlib"))
    os.environ.setdefault("YOLO_VERBOSE", "False")
    for name in ("Arial.ttf", "Arial.Unicode.ttf"):
        target = font_dir / name
        if not target.is_file():
            try:
                import matplotlib

                src = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
                shutil.copyfile(src, target)
            except (ImportError, OSError):  # no font: ultralytics only needs it for plots we never draw
                pass
    _CONFIGURED = root
    return root


@dataclass
class YoloResult:
    """One image's YOLO output in the input image's pixels (x = column, y = row, centres at integers).

    ``boxes`` (N, 4) x1, y1, x2, y2; ``scores`` (N,); ``classes`` (N,) int; ``masks`` (N, H, W) bool
    (segment); ``keypoints`` (N, K, 2) and ``keypoint_scores`` (N, K) (pose); ``probs`` (C,) (classify).
    """

    names: tuple[str, ...]
    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4)))
    scores: np.ndarray = field(default_factory=lambda: np.zeros(0))
    classes: np.ndarray = field(default_factory=lambda: np.zeros(0, int))
    masks: np.ndarray | None = None
    keypoints: np.ndarray | None = None
    keypoint_scores: np.ndarray | None = None
    probs: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.scores)

    def mask_of(self, name: str) -> np.ndarray:
        """Return the union of the masks of class ``name`` (segment; empty where there is none)."""
        if self.masks is None:
            return np.zeros((0, 0), bool)
        sel = [i for i, c in enumerate(self.classes) if self.names[c] == name]
        return self.masks[sel].any(axis=0) if sel else np.zeros(self.masks.shape[1:], bool)

    @property
    def top_class(self) -> int:
        """Return the most probable class index (classify)."""
        if self.probs is None:
            raise ValueError("top_class is only defined for a classification result")
        return int(np.argmax(self.probs))


class YoloModel:
    """A YOLOv8 model (detect, segment, pose or classify) on 2D slices."""

    def __init__(self, weights: str | Path, task: str, names: Sequence[str] = (), keypoints: Sequence[str] = (),
                 imgsz: int = 256, device: str = "auto", name: str = ""):
        configure_offline()
        from ultralytics import YOLO

        self.name = name or Path(weights).stem
        self.task = task
        self.imgsz = int(imgsz)
        self.device = select_device(device)
        self.model = YOLO(str(weights), task=task)
        # ultralytics' warm-up imports torchvision (and torch._dynamo with it, 2 s on this CPU) only
        # to use its NMS; ultralytics' own NMS gives the same boxes, and on a CPU the warm-up runs nothing
        self.model.add_callback("on_predict_start", _skip_warmup)
        model_names = getattr(self.model, "names", None) or {}
        self.names = tuple(names) or tuple(model_names[i] for i in sorted(model_names))
        self.keypoint_names = tuple(keypoints)
        self._classifier: Any = None
        self._net: Any = None
        self._net_device = ""

    def predict(self, image: np.ndarray, conf: float = 0.25, iou: float = 0.5, max_det: int = 30) -> YoloResult:
        """Return the detections on one 2D slice (raw scanner values or uint8 grey)."""
        return self.predict_many([image], conf=conf, iou=iou, max_det=max_det)[0]

    def predict_many(self, images: Sequence[np.ndarray], conf: float = 0.25, iou: float = 0.5,
                     max_det: int = 30) -> list[YoloResult]:
        """Return the detections on several 2D slices of one shape, run as one batch (a fifth faster
        than one by one on a CPU, more on a GPU); the same answers as ``predict`` slice by slice.
        Slices are raw scanner values or uint8 grey."""
        if not len(images):
            return []
        if self.task == "classify":
            probs, used = run_with_fallback(lambda device: self._classify(images, device), self.device)
            self.device = used
            return [YoloResult(names=self.names, probs=p) for p in probs]
        bgr = [to_bgr(image) for image in images]
        if len({b.shape for b in bgr}) > 1:
            raise ValueError(f"{self.name}: predict_many needs slices of one shape; got {sorted({b.shape for b in bgr})}")

        rs, used = run_with_fallback(lambda device: self._detect(bgr, conf, iou, max_det, device), self.device)
        self.device = used
        return rs

    def predict_ultralytics(self, images: Sequence[np.ndarray], conf: float = 0.25, iou: float = 0.5,
                            max_det: int = 30) -> list[YoloResult]:
        """Return ``predict_many``'s answers made by ultralytics' own predictor (the reference the
        direct path is tested against; 0.25 s slower per model on first use, 17 ms per call)."""
        bgr = [to_bgr(image) for image in images]
        rs = self.model.predict(bgr, imgsz=self.imgsz, conf=conf, iou=iou, max_det=max_det, device=self.device,
                                verbose=False, retina_masks=True)
        return [_result(r, self.names, b.shape[:2]) for r, b in zip(rs, bgr)]

    def _backend(self, device: str) -> Any:
        """Return the fused network on ``device`` as ultralytics' predictor holds it (its ``AutoBackend``:
        conv and batch norm fused, channels-last on a CPU), made once per device without the
        predictor's deep copy of the model."""
        if self._net is None or self._net_device != device:
            import torch
            from ultralytics.nn.autobackend import AutoBackend

            self._net = AutoBackend(model=self.model.model, device=torch.device(device), fuse=True, verbose=False)
            self._net.eval()
            self._net_device = device
        return self._net

    def _detect(self, bgr: Sequence[np.ndarray], conf: float, iou: float, max_det: int,
                device: str) -> list[YoloResult]:
        """Return the detect, segment or pose answers on BGR uint8 slices of one shape.

        The steps of ultralytics' predictor (``predict(..., retina_masks=True)``) called directly:
        letterbox to ``imgsz`` padded to the stride, BGR to RGB, 0-1; the network; its NMS; boxes,
        masks (at the input's size) and keypoints scaled back. The predictor's own setup (a deep
        copy and fusion of the model per predictor) and per-call bookkeeping are skipped; a test
        checks the answers equal ``predict_ultralytics``'.
        """
        import torch
        from ultralytics.data.augment import LetterBox
        from ultralytics.utils import nms, ops

        net = self._backend(device)
        letterbox = LetterBox((self.imgsz, self.imgsz), auto=True, stride=net.stride)
        x = torch.from_numpy(np.stack([letterbox(image=b) for b in bgr])).to(net.device)
        x = x.permute(0, 3, 1, 2).contiguous().flip(1).float().div_(255)
        with torch.inference_mode():
            y = net(x)
            protos = None
            if self.task == "segment":
                protos = y[0][1] if isinstance(y[0], tuple) else y[1]
                y = y[0]
            preds = nms.non_max_suppression(y, conf, iou, None, False, max_det=max_det,
                                            nc=0 if self.task == "detect" else len(net.names),
                                            end2end=getattr(net, "end2end", False))
            out = []
            for i, (pred, b) in enumerate(zip(preds, bgr)):
                shape = b.shape[:2]
                masks = None
                if self.task == "segment" and pred.shape[0]:
                    pred[:, :4] = ops.scale_boxes(x.shape[2:], pred[:, :4], b.shape)
                    masks = ops.process_mask_native(protos[i], pred[:, 6:], pred[:, :4], shape)
                    keep = masks.amax((-2, -1)) > 0        # as the predictor: a box without mask is dropped
                    if not keep.all():
                        pred, masks = pred[keep], masks[keep]
                else:
                    pred[:, :4] = ops.scale_boxes(x.shape[2:], pred[:, :4], b.shape)
                r = YoloResult(names=self.names, boxes=_np(pred[:, :4]).astype(float) - 0.5,
                               scores=_np(pred[:, 4]).astype(float), classes=_np(pred[:, 5]).astype(int))
                if self.task == "segment":
                    r.masks = (_np(masks) > 0.5) if masks is not None else np.zeros((0, *shape), bool)
                elif self.task == "pose":
                    k = ops.scale_coords(x.shape[2:], pred[:, 6:].view(pred.shape[0], *net.kpt_shape), b.shape)
                    k = _np(k).astype(float)
                    r.keypoints = k[..., :2] - 0.5     # ultralytics pixels have their edges at integers
                    r.keypoint_scores = k[..., 2] if k.shape[-1] == 3 else np.ones(k.shape[:2])
                out.append(r)
        return out

    def predict_windows(self, pairs: Sequence[tuple[np.ndarray, Any]], conf: float = 0.1,
                        max_det: int = 1) -> list[YoloResult]:
        """Return the detections (at most ``max_det`` each) in windows of slices, run as one batch:
        each pair is (slice image, ``crops.Crop``); the slice is normalised whole, then the window
        cut from it, as in training. Answers are in the window's pixels."""
        from .imaging import normalize_slice

        normalised: dict[int, np.ndarray] = {}
        windows = []
        for image, crop in pairs:
            if id(image) not in normalised:
                normalised[id(image)] = normalize_slice(image)
            windows.append(to_uint8(crop.image(normalised[id(image)])))
        return self.predict_many(windows, conf=conf, max_det=max_det)

    def _classify(self, images: Sequence[np.ndarray], device: str) -> np.ndarray:
        """Return the class probabilities (N, classes) of the images, run as one batch.

        The network is called directly with the input ultralytics' classify predictor makes
        (``classify_input``): that predictor needs torchvision's transforms, whose import costs
        2 s of every run. A test checks the probabilities equal ultralytics' predict.
        """
        import torch

        if self._classifier is None:
            net = self.model.model
            self._classifier = (net.fuse() if hasattr(net, "fuse") else net).eval()   # as ultralytics' AutoBackend
        net = self._classifier.to(device)
        x = torch.from_numpy(np.stack([classify_input(image, self.imgsz) for image in images])).to(device)
        with torch.inference_mode():
            out = net(x)
        probs = out[0] if isinstance(out, (tuple, list)) else out    # eval mode: (probabilities, logits)
        return probs.float().cpu().numpy().astype(float)


def _skip_warmup(predictor: Any) -> None:
    predictor.done_warmup = True


def classify_input(image: np.ndarray, imgsz: int) -> np.ndarray:
    """Return the (3, imgsz, imgsz) float32 input of a YOLO classifier for one slice or crop.

    The same steps as ultralytics' classify predictor (torchvision ``Resize(imgsz)`` of the short
    side, bilinear with antialiasing on a PIL image; ``CenterCrop(imgsz)``; RGB; 0-1), made with
    PIL and numpy.
    """
    from PIL import Image

    im = Image.fromarray(to_bgr(image))
    w, h = im.size
    short, long = (w, h) if w <= h else (h, w)
    new_short, new_long = imgsz, int(imgsz * long / short)
    size = (new_short, new_long) if w <= h else (new_long, new_short)
    if size != (w, h):
        im = im.resize(size, Image.BILINEAR)
    w, h = im.size
    if w < imgsz or h < imgsz:   # pragma: no cover - the short side is imgsz after the resize
        raise ValueError(f"classifier input {w}x{h} is smaller than {imgsz}")
    top, left = int(round((h - imgsz) / 2.0)), int(round((w - imgsz) / 2.0))
    arr = np.asarray(im.crop((left, top, left + imgsz, top + imgsz)))[..., ::-1]   # BGR -> RGB
    return np.ascontiguousarray(arr.transpose(2, 0, 1), dtype=np.float32) / 255.0


def _np(x: Any) -> np.ndarray:
    return x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)


def _result(r: Any, names: tuple[str, ...], shape: tuple[int, int]) -> YoloResult:
    out = YoloResult(names=names)
    if getattr(r, "probs", None) is not None:
        out.probs = _np(r.probs.data).astype(float)
        return out
    if r.boxes is not None and len(r.boxes):
        # ultralytics pixels have their edges at integers; numpy indices have centres there
        out.boxes = _np(r.boxes.xyxy).astype(float) - 0.5
        out.scores = _np(r.boxes.conf).astype(float)
        out.classes = _np(r.boxes.cls).astype(int)
    n = len(out.scores)
    if getattr(r, "masks", None) is not None and n:
        m = _np(r.masks.data) > 0.5
        if m.shape[1:] != shape:  # pragma: no cover - retina masks are already at image size
            import cv2

            m = np.stack([cv2.resize(k.astype(np.uint8), shape[::-1], interpolation=cv2.INTER_NEAREST) > 0 for k in m])
        out.masks = m
    elif getattr(r, "masks", None) is not None or r.__class__.__name__ == "Results" and getattr(r, "_keys", None):
        out.masks = np.zeros((0, *shape), bool)
    if getattr(r, "keypoints", None) is not None:
        if n:
            out.keypoints = _np(r.keypoints.xy).astype(float) - 0.5
            conf = r.keypoints.conf
            out.keypoint_scores = _np(conf).astype(float) if conf is not None else np.ones(out.keypoints.shape[:2])
        else:
            k = int(r.keypoints.shape[1]) if hasattr(r.keypoints, "shape") and len(r.keypoints.shape) > 1 else 0
            out.keypoints = np.zeros((0, k, 2))
            out.keypoint_scores = np.zeros((0, k))
    return out
