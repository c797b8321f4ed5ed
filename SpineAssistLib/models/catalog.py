"""Return what each bundled model is: its task, architecture, input, classes and keypoints.

This is the source the manifest's descriptive fields and the dataset builders are written from.
Axial MSU keypoints are named by image side (a model cannot tell the patient's left from an image
whose left-right orientation varies); the pipeline names patient sides from LPS x afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass

from SpineAssistLib.anatomy import CORNERS, MSU_KEYPOINTS

AX_POSE_KEYPOINTS: tuple[str, ...] = (
    "image-left medial facet", "image-right medial facet", "posterior disc margin", "herniation apex", "posterior canal",
)
PFIRRMANN_CLASSES: tuple[str, ...] = ("grade1", "grade2", "grade3", "grade4", "grade5")
# The corners bounding one disc space, upper body's inferior two then lower body's superior two.
DISC_CORNER_KEYPOINTS: tuple[str, ...] = (
    "upper anterior-inferior", "upper posterior-inferior", "lower anterior-superior", "lower posterior-superior",
)


@dataclass(frozen=True)
class ModelDef:
    """One bundled model's fixed definition (weights and metrics live in the manifest)."""

    name: str
    task: str                        # detect / segment / pose / classify / unet-segment / disc-grades
    architecture: str
    plane: str                       # sagittal / axial
    imgsz: int
    classes: tuple[str, ...]
    keypoints: tuple[str, ...] = ()
    flip_idx: tuple[int, ...] = ()
    yaml: str = ""                   # ultralytics model yaml (trained from scratch)
    description: str = ""
    crop: str = ""                   # the window of the slice it sees (models.crops); "" = the whole slice
    pixel_mm: float | None = None    # the pixel size (mm) slices are resampled to for it; None = their own

    @property
    def file(self) -> str:
        return f"{self.name}.pt"


MODEL_DEFS: dict[str, ModelDef] = {d.name: d for d in (
    ModelDef("sag_vertebra_pose", "pose", "YOLOv8n-pose", "sagittal", 256, ("vertebra", "sacrum"), CORNERS,
             (0, 1, 2, 3), "yolov8n-pose.yaml",
             "vertebral bodies (boxes: localisation, levels by counting up from the sacrum) and the four corners "
             "of each body (S1: superior two) on a mid-sagittal T2 slice"),
    ModelDef("sag_disc_corners", "pose", "YOLOv8n-pose", "sagittal", 192, ("disc space",), DISC_CORNER_KEYPOINTS,
             (0, 1, 2, 3), "yolov8n-pose.yaml",
             "the four vertebral-body corners bounding one disc (upper body's anterior- and posterior-inferior, "
             "lower body's anterior- and posterior-superior) on a window around that disc: the points Meyerding "
             "and the disc height are measured from, at 0.33 mm a pixel",
             crop="sagittal window 64 mm square centred on the disc's segmentation, rows along its anteroposterior "
             "axis (models.crops.sagittal_disc_crop)"),
    ModelDef("sag_disc_unet", "unet-segment", "MONAI UNet 2D (16-32-64-128-256, 2 residual units)", "sagittal", 256,
             ("background", "disc"), description="intervertebral discs on sagittal T2 slices; instances are the "
             "connected components, named by the nearest level from the vertebra model"),
    ModelDef("sag_canal_unet", "unet-segment", "MONAI UNet 2D (8-16-32-64-128, 1 residual unit)", "sagittal", 160,
             ("background", "spinal canal"), description="the spinal canal (dural sac with its CSF, as SPIDER's "
             "annotators outlined it on T2) on sagittal T2 slices resampled to 0.6 mm a pixel; the canal's "
             "antero-posterior diameter at each disc is measured on it (grading.canal)", pixel_mm=0.6),
    ModelDef("sag_pfirrmann_cls", "classify", "YOLOv8n-cls", "sagittal", 128, PFIRRMANN_CLASSES,
             yaml="yolov8n-cls.yaml", description="Pfirrmann grade I-V of one disc from a square crop centred on the "
             "disc (1.8 x its anteroposterior width) of the mid-sagittal T2 slice"),
    ModelDef("sag_disc_grades", "disc-grades", "SpineAssist DiscGradesNet (a stride-2 convolution to 16 channels, "
             "3 blocks of two convolutions 32-64-128, global average + max pooling, one linear output per grading)",
             "sagittal", 112,
             ("modic", "endplate_upper", "endplate_lower", "narrowing", "bulging", "herniation"),
             description="SPIDER's radiologists' per-disc gradings from three sagittal T2 slices around one disc: Modic "
             "type 0-3, upper and lower endplate defect, disc narrowing, bulging and herniation (each present / "
             "absent at a threshold chosen on validation patients)",
             crop="sagittal window 72 mm square centred on the disc's segmentation, rows along its anteroposterior "
             "axis, at 112 px, of the mid-sagittal slice and the slices 3 mm either side "
             "(models.disc_grades.disc_grades_crop)"),
    ModelDef("ax_disc_seg", "segment", "YOLOv8n-seg", "axial", 256, ("disc", "herniation", "thecal sac"),
             yaml="yolov8n-seg.yaml", description="disc, herniation (disc material beyond the margin, bulge included) "
             "and thecal sac on axial T2 slices; its boxes are the per-slice disc / canal detection"),
    ModelDef("ax_disc_window_seg", "segment", "YOLOv8n-seg", "axial", 256, ("disc", "herniation", "thecal sac"),
             yaml="yolov8n-seg.yaml", description="disc, herniation (disc material beyond the margin, bulge included) "
             "and thecal sac on a window around the disc that ax_disc_seg found: the masks the herniation is graded "
             "from, at 0.33 mm a pixel",
             crop="axial window 84 mm square centred on the disc's posterior margin at the mid-line, "
             "rows along the disc's left-right axis (models.crops.axial_segmentation_crop)"),
    ModelDef("ax_msu_pose", "pose", "YOLOv8n-pose", "axial", 192, ("disc",), AX_POSE_KEYPOINTS, (1, 0, 2, 3, 4),
             "yolov8n-pose.yaml", "the five MSU keypoints of an axial disc slice (" + ", ".join(MSU_KEYPOINTS) +
             ") on a window behind the disc; facets named by image side; the herniation and its apex are taken from "
             "the axial segmentation's masks (ax_disc_window_seg), not from this model's apex",
             crop="axial window 72 mm square centred 10 mm behind the disc's posterior margin at the mid-line, rows "
             "along the disc's left-right axis (models.crops.axial_disc_crop)"),
)}
