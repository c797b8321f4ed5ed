"""Return trained weights for a bundled model, written into ``Resources/Models`` with its manifest
entry (SHA-256, size, data, command, seeds and settings). ``spineassist train`` calls these.

Usage::

    from SpineAssistLib.training.train import train_model
    entry = train_model("ax_msu_pose", "/tmp/sa-data/ax_msu_pose/data.yaml", epochs=30, seed=0)

Trainings run on the CPU by default (``device="auto"`` takes a GPU when present); ultralytics
writes its run folders under ``work_dir`` (a temporary folder), never into the repository.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from SpineAssistLib.errors import ModelError
from SpineAssistLib.models.catalog import MODEL_DEFS, ModelDef
from SpineAssistLib.models.networks import build_unet, configure_offline
from SpineAssistLib.models.registry import MANIFEST_SCHEMA, models_dir, sha256_file
from SpineAssistLib.models.unet import PAD_MULTIPLE
from SpineAssistLib.training.augment import augment_geometry
from SpineAssistLib.training.datasets import FolderWriter

log = logging.getLogger(__name__)

# The settings `spineassist train all` uses unless told otherwise (the full retraining).
FULL_SETTINGS: dict[str, dict[str, Any]] = {
    "sag_vertebra_pose": {"epochs": 80, "batch": 16},
    "sag_disc_unet": {"epochs": 40, "batch": 8, "patch": 256, "lr": 1e-3},
    # patches of slices at 0.6 mm a pixel (96 mm square); no left-right flip: every slice is in the
    # canonical view, the canal always behind the bodies
    "sag_canal_unet": {"epochs": 20, "batch": 16, "patch": 160, "lr": 2e-3, "hflip": False},
    "sag_pfirrmann_cls": {"epochs": 40, "batch": 32},
    "ax_disc_seg": {"epochs": 60, "batch": 16},
    "sag_disc_corners": {"epochs": 60, "batch": 16},
    "ax_disc_window_seg": {"epochs": 60, "batch": 16},
    "ax_msu_pose": {"epochs": 80, "batch": 16},
}

# Ultralytics augmentation on top of the dataset builder's intensity augmentation: geometry
# (rotation, scale, shift, flips, mosaic) and brightness; no colour (the images are grey).
YOLO_AUGMENT: dict[str, Any] = {"hsv_h": 0.0, "hsv_s": 0.0, "hsv_v": 0.3, "degrees": 10.0, "translate": 0.1,
                                "scale": 0.3, "fliplr": 0.5, "flipud": 0.0, "mosaic": 0.5, "mixup": 0.0}
# The keypoint models see a window already moved, turned and scaled by the dataset builder
# (``datasets.CROP_JITTER``): little more geometry, no mosaic (it would break the window's
# centring), and no left-right flip of a sagittal window (anterior is always on its left).
CROP_AUGMENT: dict[str, Any] = {**YOLO_AUGMENT, "degrees": 4.0, "translate": 0.04, "scale": 0.08, "mosaic": 0.0}


def yolo_augmentation(defn: ModelDef) -> dict[str, Any] | None:
    """Return the ultralytics augmentation a YOLO model trains with (None for a classifier)."""
    if defn.task == "classify" or defn.task == "unet-segment":
        return None
    # every slice is shown in the canonical view (models.orientation): a sagittal slice always has
    # anterior on its left, so a flipped one would only teach corners on the wrong side
    fliplr = 0.0 if defn.plane == "sagittal" else 0.5
    if not defn.crop:
        return {**YOLO_AUGMENT, "fliplr": fliplr}
    return {**CROP_AUGMENT, "fliplr": fliplr}


def _versions() -> dict[str, str]:
    out = {}
    for mod in ("torch", "ultralytics", "monai"):
        try:
            out[mod] = __import__(mod).__version__
        except ImportError:  # pragma: no cover
            pass
    return out


def train_yolo(defn: ModelDef, data: str | Path, work_dir: Path, epochs: int, batch: int = 16, seed: int = 0,
               device: str = "cpu", imgsz: int | None = None, init: str | Path | None = None, **overrides: Any) -> Path:
    """Return the best weights of a YOLOv8 model trained on ``data``: from scratch (the .yaml; no
    download), or fine-tuned from the local weights file ``init``."""
    configure_offline()
    from ultralytics import YOLO

    args = dict(data=str(data), epochs=int(epochs), imgsz=int(imgsz or defn.imgsz), batch=int(batch),
                pretrained=False, amp=False, workers=0, device=device, plots=False, val=True, seed=int(seed),
                deterministic=True, project=str(work_dir), name=defn.name, exist_ok=True, verbose=False,
                patience=1000, close_mosaic=max(1, int(epochs) // 4),
                # one optimiser step per batch (ultralytics otherwise accumulates to 64 images, which
                # leaves a small set a couple of steps per epoch) and a short warm-up for short runs
                nbs=int(batch), warmup_epochs=float(min(3, max(1, int(epochs) // 10))))
    args.update(yolo_augmentation(defn) or {})
    if init:
        # ultralytics drops a .pt model's weights when pretrained=False: name the file instead
        args["pretrained"] = str(init)
    args.update(overrides)
    model = YOLO(str(init) if init else defn.yaml, task=defn.task)
    model.train(**args)
    save_dir = Path(model.trainer.save_dir)
    best = save_dir / "weights" / "best.pt"
    if not best.is_file():
        best = save_dir / "weights" / "last.pt"
    if not best.is_file():
        raise ModelError(f"training {defn.name} wrote no weights under {save_dir}")
    return best


class _DiscPatches:
    """Random square patches of U-Net samples (mostly around the structure), rotated / deformed (and,
    with ``hflip``, mirrored left-right) on the fly."""

    def __init__(self, files: list[Path], patch: int, augment: bool, seed: int, hflip: bool = True):
        self.files, self.patch, self.augment, self.hflip = files, patch, augment, hflip
        self.rng = np.random.default_rng(seed)
        self.cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def sample(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        if i not in self.cache:
            with np.load(self.files[i]) as z:
                self.cache[i] = (z["image"].astype(np.float32), z["mask"].astype(np.uint8))
        img, mask = self.cache[i]
        p = self.patch
        h, w = img.shape
        if h < p or w < p:
            img = np.pad(img, ((0, max(0, p - h)), (0, max(0, p - w))))
            mask = np.pad(mask, ((0, max(0, p - h)), (0, max(0, p - w))))
            h, w = img.shape
        rows, cols = np.nonzero(mask)
        if len(rows) and self.rng.random() < 0.8:    # mostly patches that hold discs
            j = self.rng.integers(len(rows))
            y0 = int(np.clip(rows[j] - self.rng.integers(p // 4, 3 * p // 4), 0, h - p))
            x0 = int(np.clip(cols[j] - self.rng.integers(p // 4, 3 * p // 4), 0, w - p))
        else:
            y0, x0 = int(self.rng.integers(0, h - p + 1)), int(self.rng.integers(0, w - p + 1))
        img, mask = img[y0:y0 + p, x0:x0 + p], mask[y0:y0 + p, x0:x0 + p]
        if self.augment:
            img, mask = augment_geometry(img, mask, self.rng)
            if self.hflip and self.rng.random() < 0.5:
                img, mask = img[:, ::-1], mask[:, ::-1]
        return np.ascontiguousarray(img), np.ascontiguousarray(mask)


def train_unet(data_dir: str | Path, out_file: Path, epochs: int, batch: int = 8, patch: int = 256, lr: float = 1e-3,
               seed: int = 0, device: str = "cpu", log_every: int = 1,
               init: str | Path | None = None, name: str = "sag_disc_unet", hflip: bool = True) -> dict[str, Any]:
    """Train U-Net model ``name`` on ``data_dir/{train,val}/*.npz``; write fp16 weights; return the history.

    ``init``: start from these weights (a fine-tune) instead of a random initialisation; ``hflip``:
    mirror half the training patches left-right.
    """
    import torch
    from monai.losses import DiceCELoss

    data_dir = Path(data_dir)
    train_files = sorted((data_dir / "train").glob("*.npz"))
    val_files = sorted((data_dir / "val").glob("*.npz"))
    if not train_files:
        raise ModelError(f"{data_dir}/train holds no .npz samples; build the dataset first")
    torch.manual_seed(seed)
    net = build_unet(name)
    if init is not None:
        try:
            state = torch.load(str(init), map_location="cpu", weights_only=True)
            net.load_state_dict({k: v.float() for k, v in state.items()})
        except Exception as e:  # noqa: BLE001 - any unreadable or mismatched file gets one clear message
            raise ModelError(f"--init {init}: not {name} weights ({type(e).__name__}: {str(e)[:200]})") from None
    net = net.to(device)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, epochs))
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True)
    train = _DiscPatches(train_files, patch, True, seed, hflip=hflip)
    history = []
    best_dice, best_state = -1.0, None
    rng = np.random.default_rng(seed + 1)
    for epoch in range(epochs):
        net.train()
        order = rng.permutation(len(train_files))
        losses = []
        for k in range(0, len(order), batch):
            xs, ys = zip(*(train.sample(int(i)) for i in order[k:k + batch]))
            x = torch.from_numpy(np.stack(xs))[:, None].to(device)
            y = torch.from_numpy(np.stack(ys).astype(np.int64))[:, None].to(device)
            opt.zero_grad()
            loss = loss_fn(net(x), y)
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
        sched.step()
        dice = _unet_val_dice(net, val_files, device) if val_files else float("nan")
        history.append({"epoch": epoch + 1, "loss": float(np.mean(losses)), "val_dice": dice})
        if epoch % log_every == 0:
            log.info("%s epoch %d loss %.4f val dice %.4f", name, epoch + 1, np.mean(losses), dice)
            print(f"{name} epoch {epoch + 1}/{epochs} loss {np.mean(losses):.4f} val dice {dice:.4f}", flush=True)
        if not val_files or dice >= best_dice:
            best_dice = dice
            best_state = {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}
    if best_state is None:        # no epoch run (epochs=0): the starting weights
        best_state = {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}
    out_file.parent.mkdir(parents=True, exist_ok=True)
    # fp16 halves the file; inference casts back to float32
    torch.save({k: v.half() if v.is_floating_point() else v for k, v in best_state.items()}, str(out_file))
    return {"history": history, "best_val_dice": best_dice}


def _unet_val_dice(net: Any, files: list[Path], device: str) -> float:
    import torch

    net.eval()
    inter = total = 0.0
    with torch.inference_mode():
        for f in files:
            with np.load(f) as z:
                img, mask = z["image"].astype(np.float32), z["mask"] > 0
            h, w = img.shape
            x = np.pad(img, ((0, (-h) % PAD_MULTIPLE), (0, (-w) % PAD_MULTIPLE)))
            p = torch.softmax(net(torch.from_numpy(x)[None, None].to(device)), 1)[0, 1].cpu().numpy()[:h, :w] >= 0.5
            inter += float((p & mask).sum())
            total += float(p.sum() + mask.sum())
    return 2 * inter / total if total else 1.0


@contextlib.contextmanager
def _manifest_lock(path: Path):
    import fcntl
    import hashlib

    path.parent.mkdir(parents=True, exist_ok=True)
    # the lock lives in the temp folder: nothing but weights and the manifest in Resources/Models
    key = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:16]
    with open(Path(tempfile.gettempdir()) / f"spineassist-manifest-{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def update_manifest(entry: Mapping[str, Any], manifest_path: Path | None = None) -> Path:
    """Write ``entry`` into the manifest (replacing the model of the same name); return the path."""
    path = manifest_path or models_dir() / "manifest.json"
    with _manifest_lock(path):
        data = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {"schema": MANIFEST_SCHEMA, "models": []}
        models = [m for m in data.get("models", []) if m.get("name") != entry["name"]]
        models.append(dict(entry))
        order = list(MODEL_DEFS)
        models.sort(key=lambda m: order.index(m["name"]) if m["name"] in order else len(order))
        data["models"] = models
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
        tmp.replace(path)
    return path


def _lineage(init: Path) -> dict[str, Any]:
    """Describe the weights a fine-tune starts from: file, SHA-256 and, where a manifest beside them or
    the bundled manifest knows them, how they were trained (so a chain of fine-tunes stays traceable)."""
    digest = sha256_file(init)
    record: dict[str, Any] = {"file": init.name, "sha256": digest}
    for manifest in (init.parent / "manifest.json", models_dir() / "manifest.json"):
        try:
            entries = json.loads(manifest.read_text(encoding="utf-8")).get("models", [])
        except (OSError, ValueError):
            continue
        for entry in entries:
            if entry.get("sha256") == digest and "training" in entry:
                record["training"] = entry["training"]
                return record
    return record


def train_model(name: str, data: str | Path, *, epochs: int | None = None, batch: int | None = None, seed: int = 0,
                device: str = "cpu", out_dir: str | Path | None = None, work_dir: str | Path | None = None,
                data_record: Mapping[str, Any] | None = None, command: str | None = None,
                version: str | None = None, init: str | Path | None = None) -> dict[str, Any]:
    """Train model ``name`` on ``data`` (data.yaml, image folder or npz folder); return its manifest entry.

    The weights go to ``out_dir`` (default ``Resources/Models``) as ``<name>.pt``, and the entry
    (SHA-256, size, settings, data record, time taken) into that folder's manifest.json.
    """
    if name not in MODEL_DEFS:
        raise ModelError(f"no model named {name!r}; models are {', '.join(MODEL_DEFS)}")
    defn = MODEL_DEFS[name]
    if defn.task == "disc-grades":
        raise ModelError(f"{name} trains on a SPIDER folder with its gradings: `spineassist train {name} --data DIR "
                         f"--gradings CSV` (training.disc_grades.train_and_register)")
    settings = dict(FULL_SETTINGS[name])
    if epochs is not None:
        settings["epochs"] = int(epochs)
    if batch is not None:
        settings["batch"] = int(batch)
    out = Path(out_dir) if out_dir else models_dir()
    out.mkdir(parents=True, exist_ok=True)
    target = out / defn.file
    work = Path(work_dir) if work_dir else Path(tempfile.mkdtemp(prefix=f"spineassist-train-{name}-"))
    t0 = time.perf_counter()
    extra: dict[str, Any] = {}
    if init is not None:
        init = Path(init)
        if not init.is_file():
            raise ModelError(f"--init {init}: no such weights file")
        extra["initialised_from"] = _lineage(init)
    if defn.task == "unet-segment":
        tmp = work / defn.file
        history = train_unet(data, tmp, settings["epochs"], settings["batch"], settings.get("patch", 256),
                             settings.get("lr", 1e-3), seed, device, init=init, name=name,
                             hflip=settings.get("hflip", True))
        shutil.copyfile(tmp, target)
        extra.update(best_val_dice=history["best_val_dice"],
                     final_loss=history["history"][-1]["loss"] if history["history"] else None)
    else:
        if defn.task == "classify":
            FolderWriter(Path(data), defn.classes).finish()   # every class in both splits (ultralytics needs it)
        settings.update(nbs=settings["batch"], warmup_epochs=float(min(3, max(1, settings["epochs"] // 10))))
        best = train_yolo(defn, data, work, settings["epochs"], settings["batch"], seed, device, init=init)
        shutil.copyfile(best, target)
    seconds = time.perf_counter() - t0
    return register_weights(name, target, settings=settings, seed=seed, device=device, seconds=seconds,
                            data_record=data_record or {"path": str(data)}, command=command, version=version,
                            extra=extra, out_dir=out)


def drop_classify_transforms(weights: str | Path) -> bool:
    """Remove the torchvision preprocessing object ultralytics pickles into a classifier's
    checkpoint (``model.transforms``); return whether the file changed.

    Unpickling it imports torchvision and torch._dynamo, seconds of every run; inference makes the
    same input without it (``yolo.classify_input``) and ultralytics rebuilds it when absent.
    """
    import torch

    path = Path(weights)
    ckpt = torch.load(str(path), map_location="cpu", weights_only=False)
    changed = False
    for key in ("model", "ema"):
        net = ckpt.get(key) if isinstance(ckpt, dict) else None
        if net is not None and getattr(net, "transforms", None) is not None:
            net.transforms = None
            changed = True
    if changed:
        tmp = path.with_name(path.name + ".tmp")
        torch.save(ckpt, str(tmp))
        os.replace(tmp, path)
    return changed


def register_weights(name: str, weights: str | Path, *, settings: Mapping[str, Any], seed: int, device: str,
                     seconds: float | None, data_record: Mapping[str, Any], command: str | None = None,
                     version: str | None = None, extra: Mapping[str, Any] | None = None,
                     out_dir: str | Path | None = None) -> dict[str, Any]:
    """Copy ``weights`` to ``out_dir/<name>.pt`` (if elsewhere) and write its manifest entry; return it.

    Also used for a training stopped early: its best checkpoint so far is registered with the
    epochs actually completed recorded in ``settings``.
    """
    defn = MODEL_DEFS[name]
    out = Path(out_dir) if out_dir else models_dir()
    target = out / defn.file
    if Path(weights).resolve() != target.resolve():
        shutil.copyfile(weights, target)
    if defn.task == "classify":
        drop_classify_transforms(target)
    entry = {
        "name": name, "file": defn.file, "sha256": sha256_file(target), "size_bytes": target.stat().st_size,
        "task": defn.task, "architecture": defn.architecture, "description": defn.description,
        "input": {"plane": defn.plane, "size": defn.imgsz, "channels": 1 if defn.task == "unet-segment" else 3,
                  "normalisation": "per slice: 0.5-99.5th percentile to 0-1 (8-bit grey for YOLO)",
                  **({"crop": defn.crop} if defn.crop else {}),
                  **({"pixel_mm": defn.pixel_mm} if defn.pixel_mm else {})},
        "classes": list(defn.classes), "keypoints": list(defn.keypoints),
        "version": version or _dt.date.today().strftime("%Y.%m.%d"),
        "training": {"data": dict(data_record), "command": command or f"spineassist train {name}",
                     "seed": seed, "device": device, "settings": dict(settings),
                     "yolo_augmentation": yolo_augmentation(defn),
                     "seconds": None if seconds is None else round(seconds, 1), "software": _versions(),
                     **dict(extra or {})},
        "metrics": {},
    }
    if out == models_dir():
        old = _old_metrics(name)
        entry["metrics"] = old if old.get("sha256") == entry["sha256"] else {}
    update_manifest(entry, out / "manifest.json")
    return entry


def _old_metrics(name: str) -> dict[str, Any]:
    path = models_dir() / "manifest.json"
    if not path.is_file():
        return {}
    for m in json.loads(path.read_text(encoding="utf-8")).get("models", []):
        if m.get("name") == name:
            return dict(m.get("metrics") or {})
    return {}
