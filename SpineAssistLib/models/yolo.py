"""The YOLOv8 models (detect, segment, pose, classify) on 2D slices, returning plain numpy.

The network runs in ONNX Runtime on a CPU or in torch on a GPU (``runtime``). Ultralytics'
predictor steps around it (letterbox, NMS, masks, keypoints) are made here with numpy and OpenCV.
Ultralytics itself is needed only to load a ``.pt`` file into torch (GPU, ONNX export, training);
it is imported inside functions, after ``configure_offline()`` has pointed its settings, font and
matplotlib folders at a project-owned cache, so nothing is downloaded or written to the user's home.

Usage::

    from SpineAssistLib.models import load_model
    pose = load_model("sag_vertebra_pose")            # verifies the SHA-256 first
    r = pose.predict(sagittal_slice)                   # raw uint16 or float 2D array
    r.boxes, r.scores, r.classes, r.keypoints          # pixels: x = column, y = row
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from SpineAssistLib.models import runtime
from SpineAssistLib.models.device import run_with_fallback, select_device
from SpineAssistLib.models.imaging import normalize_slice, to_bgr, to_uint8
from SpineAssistLib.models.networks import (
    configure_offline,
    load_yolo_network,
    yolo_outputs,
)


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


YOLO_STRIDE = 32          # the largest stride of the YOLOv8 heads: letterboxed inputs are padded to a multiple of it
LETTERBOX_FILL = 114      # ultralytics' letterbox padding value
MAX_NMS_BOXES = 30000     # as ultralytics' NMS: boxes considered at most, and the class offset that keeps
CLASS_OFFSET = 7680       # classes apart in a class-aware NMS


class YoloModel:
    """A YOLOv8 model (detect, segment, pose or classify) on 2D slices.

    The network runs in ONNX Runtime on a CPU and in torch on a GPU (``runtime``); the steps before
    and after it (letterbox, NMS, masks, keypoints) are ultralytics' predictor's, made with numpy
    and OpenCV, so neither ultralytics nor torch is imported on a CPU. ``predict_ultralytics``
    gives ultralytics' own answers, which the tests compare.
    """

    def __init__(self, weights: str | Path, task: str, names: Sequence[str] = (), keypoints: Sequence[str] = (),
                 imgsz: int = 256, device: str = "auto", name: str = "", spec: Any = None):
        self.name = name or Path(weights).stem
        self.weights = Path(weights)
        self.task = task
        self.imgsz = int(imgsz)
        self.device = select_device(device)
        self.keypoint_names = tuple(keypoints)
        self._torch: dict[str, Any] = {}
        self._ultralytics: Any = None
        self._onnx = runtime.OnnxNetwork.for_model(spec, self.weights, self.device)
        if self._onnx is None:
            self._torch_network(self.device)     # loaded now: a broken file fails here, not at the first slice
        self.names = tuple(names) or self._network_names()

    @property
    def runtime(self) -> str:
        """Return the runtime of the network: ``onnx`` or ``torch`` (``OnnxNetwork.for_model``
        gives a session only on the CPU, and the CPU never falls back to another device)."""
        return "onnx" if self._onnx is not None else "torch"

    def _network_names(self) -> tuple[str, ...]:
        """Return the class names the torch network carries (where the manifest gives none)."""
        names = getattr(self._torch_network("cpu"), "names", None) or {}
        return tuple(names[i] for i in sorted(names))

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
            x = np.stack([classify_input(image, self.imgsz) for image in images])
            probs = self._forward(x)[0]
            return [YoloResult(names=self.names, probs=np.asarray(p, float)) for p in probs]
        bgr = [to_bgr(image) for image in images]
        if len({b.shape for b in bgr}) > 1:
            raise ValueError(f"{self.name}: predict_many needs slices of one shape; got {sorted({b.shape for b in bgr})}")
        x = np.stack([letterbox(b, self.imgsz) for b in bgr])
        x = np.ascontiguousarray(x.transpose(0, 3, 1, 2)[:, ::-1], dtype=np.float32) / np.float32(255)   # BGR -> RGB
        out = self._forward(x)
        return [self._result(out, i, x.shape[2:], b.shape[:2], conf, iou, max_det) for i, b in enumerate(bgr)]

    def predict_windows(self, pairs: Sequence[tuple[np.ndarray, Any]], conf: float = 0.1,
                        max_det: int = 1) -> list[YoloResult]:
        """Return the detections (at most ``max_det`` each) in windows of slices, run as one batch:
        each pair is (slice image, ``crops.Crop``); the slice is normalised whole, then the window
        cut from it, as in training. Answers are in the window's pixels."""
        normalised: dict[int, np.ndarray] = {}
        windows = []
        for image, crop in pairs:
            if id(image) not in normalised:
                normalised[id(image)] = normalize_slice(image)
            windows.append(to_uint8(crop.image(normalised[id(image)])))
        return self.predict_many(windows, conf=conf, max_det=max_det)

    def predict_ultralytics(self, images: Sequence[np.ndarray], conf: float = 0.25, iou: float = 0.5,
                            max_det: int = 30) -> list[YoloResult]:
        """Return ``predict_many``'s answers made by ultralytics' own predictor and torch (the
        reference the tests compare ``predict_many`` with)."""
        if self._ultralytics is None:
            configure_offline()
            from ultralytics import YOLO

            self._ultralytics = YOLO(str(self.weights), task=self.task)
        bgr = [to_bgr(image) for image in images]
        rs = self._ultralytics.predict(bgr, imgsz=self.imgsz, conf=conf, iou=iou, max_det=max_det,
                                       device="cpu", verbose=False, retina_masks=True)
        return [_result(r, self.names, b.shape[:2]) for r, b in zip(rs, bgr)]

    # ---- the network ----

    def _torch_network(self, device: str) -> Any:
        """Return the fused torch network on ``device`` (made once per device)."""
        if device not in self._torch:
            self._torch[device] = load_yolo_network(self.weights, self.task).to(device)   # its own copy per device
        return self._torch[device]

    def _forward(self, x: np.ndarray) -> list[np.ndarray]:
        """Return the network's output arrays (``runtime``'s order) for the input batch ``x``."""
        if self.runtime == "onnx":
            return self._onnx(x)

        def call(device: str) -> list[np.ndarray]:
            import torch

            net = self._torch_network(device)
            with torch.inference_mode():
                y = net(torch.from_numpy(x).to(device))
            return [t.float().cpu().numpy() for t in yolo_outputs(y, self.task)]

        out, used = run_with_fallback(call, self.device)
        self.device = used
        return out

    def _result(self, out: list[np.ndarray], i: int, input_shape: tuple[int, int], shape: tuple[int, int],
                conf: float, iou: float, max_det: int) -> YoloResult:
        """Return image ``i``'s answer from the batch output, in the pixels of the image (``shape``)."""
        nc = len(self.names) if self.task != "detect" else out[0].shape[1] - 4
        rows = non_max_suppression(out[0][i], conf, iou, max_det, nc)
        rows[:, :4] = scale_boxes(input_shape, rows[:, :4], shape)
        r = YoloResult(names=self.names, boxes=rows[:, :4].astype(float) - 0.5,   # ultralytics: pixel edges at
                       scores=rows[:, 4].astype(float), classes=rows[:, 5].astype(int))   # integers; numpy: centres
        if self.task == "segment":
            masks = process_mask_native(out[1][i], rows[:, 6:], rows[:, :4], shape)
            keep = masks.any(axis=(1, 2))            # as the predictor: a box without mask is dropped
            if not keep.all():
                r = YoloResult(names=self.names, boxes=r.boxes[keep], scores=r.scores[keep], classes=r.classes[keep])
                masks = masks[keep]
            r.masks = masks
        elif self.task == "pose":
            n_kp = len(self.keypoint_names)
            k = rows[:, 6:].reshape(len(rows), n_kp, (rows.shape[1] - 6) // n_kp).astype(float)
            k = scale_coords(input_shape, k, shape)
            r.keypoints = k[..., :2] - 0.5
            r.keypoint_scores = k[..., 2] if k.shape[-1] == 3 else np.ones(k.shape[:2])
        return r


# ---- ultralytics' predictor steps in numpy (ultralytics 8.4: data.augment.LetterBox, utils.nms, utils.ops) ----

def _letterbox_geometry(shape: tuple[int, int], imgsz: int) -> tuple[tuple[int, int], int, int, int, int]:
    """Return ((new width, new height), top, bottom, left, right) of the letterbox of an image of ``shape``."""
    h, w = shape
    r = min(imgsz / h, imgsz / w)
    new_w, new_h = max(round(w * r), 1), max(round(h * r), 1)
    dw, dh = (imgsz - new_w) % YOLO_STRIDE / 2, (imgsz - new_h) % YOLO_STRIDE / 2   # minimal padding to the stride
    return (new_w, new_h), round(dh - 0.1), round(dh + 0.1), round(dw - 0.1), round(dw + 0.1)


def letterbox(bgr: np.ndarray, imgsz: int) -> np.ndarray:
    """Return ``bgr`` resized (long side ``imgsz``, bilinear) and padded to a multiple of the stride."""
    import cv2

    (new_w, new_h), top, bottom, left, right = _letterbox_geometry(bgr.shape[:2], imgsz)
    if (bgr.shape[1], bgr.shape[0]) != (new_w, new_h):
        bgr = cv2.resize(bgr, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    return cv2.copyMakeBorder(bgr, top, bottom, left, right, cv2.BORDER_CONSTANT, value=(LETTERBOX_FILL,) * 3)


def non_max_suppression(pred: np.ndarray, conf: float, iou: float, max_det: int, nc: int) -> np.ndarray:
    """Return the kept rows (x1, y1, x2, y2, score, class, extra...) of one image's raw predictions
    ``pred`` (4 + nc + extra, anchors): best class per box above ``conf``, class-aware greedy NMS."""
    scores = pred[4:4 + nc]
    keep = scores.max(axis=0) > conf
    x = pred[:, keep].T.astype(np.float32)
    if not len(x):
        return np.zeros((0, pred.shape[0] + 2 - nc), np.float32)
    xy, wh = x[:, :2], x[:, 2:4] / 2
    box = np.concatenate([xy - wh, xy + wh], axis=1)
    cls = x[:, 4:4 + nc]
    j = cls.argmax(axis=1)
    best = cls[np.arange(len(x)), j]
    rows = np.concatenate([box, best[:, None], j[:, None].astype(np.float32), x[:, 4 + nc:]], axis=1)[best > conf]
    if len(rows) > MAX_NMS_BOXES:
        rows = rows[np.argsort(-rows[:, 4], kind="stable")[:MAX_NMS_BOXES]]
    kept = _greedy_nms(rows[:, :4] + rows[:, 5:6] * CLASS_OFFSET, rows[:, 4], iou)[:max_det]
    return rows[kept]


def _greedy_nms(boxes: np.ndarray, scores: np.ndarray, threshold: float) -> np.ndarray:
    """Return the indices kept by greedy NMS (highest score first; IoU above ``threshold`` suppressed)."""
    x1, y1, x2, y2 = boxes.T
    areas = (x2 - x1) * (y2 - y1)
    order = np.argsort(-scores, kind="stable")
    keep = []
    while len(order):
        i, rest = order[0], order[1:]
        keep.append(i)
        w = np.clip(np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]), 0, None)
        h = np.clip(np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]), 0, None)
        inter = w * h
        order = rest[inter / (areas[i] + areas[rest] - inter) <= threshold] if inter.any() else rest
    return np.asarray(keep, int)


def _unletterbox(input_shape: tuple[int, int], shape: tuple[int, int]) -> tuple[float, float, int, int]:
    """Return (gain x, gain y, pad x, pad y) from image ``shape`` to its letterboxed ``input_shape``."""
    gain = min(input_shape[0] / shape[0], input_shape[1] / shape[1])
    new_h, new_w = (max(round(v * gain), 1) for v in shape)
    return (new_w / shape[1], new_h / shape[0], round((input_shape[1] - new_w) / 2 - 0.1),
            round((input_shape[0] - new_h) / 2 - 0.1))


def scale_boxes(input_shape: tuple[int, int], boxes: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Return x1, y1, x2, y2 boxes on the letterboxed input mapped to the image, clipped to it."""
    gx, gy, px, py = _unletterbox(input_shape, shape)
    b = (np.asarray(boxes, np.float32) - np.float32([px, py, px, py])) / np.float32([gx, gy, gx, gy])
    return np.clip(b, 0, np.float32([shape[1], shape[0], shape[1], shape[0]]))


def scale_coords(input_shape: tuple[int, int], coords: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Return keypoints (..., x, y[, score]) on the letterboxed input mapped to the image, clipped to it."""
    gx, gy, px, py = _unletterbox(input_shape, shape)
    c = np.array(coords, float)
    c[..., 0] = np.clip((c[..., 0] - px) / gx, 0, shape[1])
    c[..., 1] = np.clip((c[..., 1] - py) / gy, 0, shape[0])
    return c


def _resize_bilinear(a: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """Return ``a`` (n, h, w) resized as torch's ``F.interpolate(mode="bilinear", align_corners=False)``."""
    def axis(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        src = np.clip((np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5, 0, None)
        i0 = np.minimum(np.floor(src).astype(int), n_in - 1)
        return i0, np.minimum(i0 + 1, n_in - 1), (src - i0).astype(np.float32)

    r0, r1, fr = axis(a.shape[1], out_h)
    c0, c1, fc = axis(a.shape[2], out_w)
    rows = a[:, r0] * (1 - fr)[None, :, None] + a[:, r1] * fr[None, :, None]
    return rows[:, :, c0] * (1 - fc) + rows[:, :, c1] * fc


def process_mask_native(protos: np.ndarray, coefficients: np.ndarray, boxes: np.ndarray,
                        shape: tuple[int, int]) -> np.ndarray:
    """Return the bool masks (n, h, w) at the image's size: prototype mix, up-sampled bilinearly past
    the letterbox padding, cut to each box (ultralytics' ``process_mask_native``)."""
    import math

    c, mh, mw = protos.shape
    h, w = shape
    if not len(coefficients):
        return np.zeros((0, h, w), bool)
    logits = (coefficients.astype(np.float32) @ protos.reshape(c, -1).astype(np.float32)).reshape(-1, mh, mw)
    gain = min(4 * mh / h, 4 * mw / w)
    pad = (4 * mh - max(round(h * gain), 1)) | (4 * mw - max(round(w * gain), 1))
    f = 4 // math.gcd(4, pad | pad // 2)   # the smallest up-sampling that crops the padding on whole pixels
    if f > 1:
        logits = _resize_bilinear(logits, mh * f, mw * f)
    ih, iw = logits.shape[1:]
    g = min(ih / h, iw / w)
    new_h, new_w = max(round(h * g), 1), max(round(w * g), 1)
    top, left = round((ih - new_h) / 2 - 0.1), round((iw - new_w) / 2 - 0.1)
    logits = logits[:, top:top + new_h, left:left + new_w]
    masks = (_resize_bilinear(logits, h, w) if logits.shape[1:] != (h, w) else logits) > 0
    cols, rows = np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32)
    for m, (x1, y1, x2, y2) in zip(masks, np.asarray(boxes, np.float32)):
        m &= ((rows >= y1) & (rows < y2))[:, None] & ((cols >= x1) & (cols < x2))[None, :]
    return masks


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
