"""SAPNet proposal selection (Wei et al., "Semantic-aware SAM for Point-Prompted Instance Segmentation", CVPR 2024).

Given one annotated point with a class per instance, SAPNet picks, among SAM's mask proposals for that
point, the one that covers the instance. Re-implemented here (prior-work.md 1.4; the upstream
mmdetection code ``SAP_head.py`` / ``MIL_bbox_head.py`` was read for the Point Distance Guidance):

* **Proposal bag** (:func:`proposal_bag`): the backend's 3 multimask proposals at the point and at
  ``n_jitter`` jittered points (default 1: 6 proposals per point, as SAPNet's ``reshape(-1, 6, 4)``),
  with their boxes ``(x0, y0, x1, y1)`` in image pixels.
* **RoI features**: RoIAlign (``torchvision.ops.roi_align``, 7x7) of the backend's embedding, resampled
  onto the image frame (:func:`agents.aop.frame.frame_features`) and reduced to 32 channels by a 1x1
  convolution; two shared fully connected layers (``Shared2FC``).
* **Proposal selection module** (:class:`SAPHead`): a classification branch, softmax over classes,
  times an instance branch, softmax over the bag's proposals (MIL), times the Point Distance Guidance
  (:func:`point_distance_guidance`). Bag score ``S_c = sum_j cls_jc ins_jc pdg_j``; loss: the MIL
  binary cross-entropy of the paper's eq. 3, ``-sum_c y_c log S_c + (1 - y_c) log(1 - S_c)``, with the
  point's class as label (no mask supervision).
* **Classes**: the data's (``class_mode="dataset"``), COCO's supercategories (``"supercategory"``,
  :mod:`~agents.sapnet.labels`, for COCO_MVal's names and VOC's ids) or one class (``"agnostic"``).
* **Negative proposals** (SAPNet's NPG): random background boxes (IoU < 0.3 to every proposal) and
  parts of each selected proposal (inside its box, IoU < 0.5), pushed to the background class by
  :func:`~agents.sapnet.model.negative_loss`.
* Deviation: a *background* class (the last one) is trained on bags decoded at background points
  (SAPNet's negatives are random boxes with low IoU to the positives); it also gives an objectness
  ``1 - p_background`` that scores points of classes unseen in training (class-agnostic use).
* Deviation: no mask branch, no positive proposals, refinement stage or box mining (PPG, PRM, BMS,
  MPS): only the selection and the negatives. Adam (lr 1e-3, 20 epochs) instead of SGD (0.015, 12).

Modules, like :mod:`agents.aop`: :mod:`~agents.sapnet.model` (bags, PDG, negatives, :class:`SAPHead`, :class:`SAPNet`),
:mod:`~agents.sapnet.train` (:func:`fit`, :func:`save_sapnet`, :func:`load_sapnet`) and
:mod:`~agents.sapnet.policy` (:class:`SAPNetPolicy` for ``SamPrompt-v0``).

Points are ``(x, y)`` image pixels (x right, y down; pixel ``(floor(y), floor(x))``); masks ``(H, W)``
bool indexed ``[row, col]``; labels 1 foreground / 0 background.
"""

from agents.sapnet.model import (
    BACKGROUND,
    Bag,
    SAPHead,
    SAPNet,
    SAPNetConfig,
    background_boxes,
    box_iou,
    mil_loss,
    negative_loss,
    part_boxes,
    point_distance_guidance,
    proposal_bag,
    proposal_scores,
)
from agents.sapnet.policy import DEFAULT_SAPNET_DIR, SAPNetPolicy
from agents.sapnet.train import CLASS_MODES, SAPNET_FILE, fit, load_sapnet, save_sapnet

__all__ = [
    "BACKGROUND",
    "CLASS_MODES",
    "DEFAULT_SAPNET_DIR",
    "SAPNET_FILE",
    "Bag",
    "SAPHead",
    "SAPNet",
    "SAPNetConfig",
    "SAPNetPolicy",
    "background_boxes",
    "box_iou",
    "fit",
    "load_sapnet",
    "mil_loss",
    "negative_loss",
    "part_boxes",
    "point_distance_guidance",
    "proposal_bag",
    "proposal_scores",
    "save_sapnet",
]
