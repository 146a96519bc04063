"""IoU of each prediction's chosen mask with the ground truth at full resolution, void excluded.

This is the env's ``info["iou"]`` (:meth:`~sam_gym.backends.base.PromptableSegmenter.best_mask_ious`).
It equals :func:`sam_gym.metrics.iou` ``(prediction.mask(), target, void)``, and it is computed as
``|M & T & V| / (|M & V| + |T & V| - |M & T & V|)``, where ``V`` is the non-void pixels and
``|T & V|`` is counted once per episode (:class:`MaskReference`).

* :func:`host_ious` reads each ``prediction.mask()`` on the host. Any backend can use it.
* :func:`device_ious` is for backends whose full-resolution masks are upsampled logits on a torch
  device (SAM, SAM 2; their ``Prediction.full_mask`` is a :class:`DeviceFullMask`). On CUDA it
  upsamples the chosen proposals of all items from images of one size in one operation; it counts
  on the device and makes one host copy of the counts. No mask goes to the host. Each item goes
  through the same operations as alone, so the IoUs equal :func:`host_ious`'s exactly. On the CPU
  (where SAM's references are host arrays, :class:`DeviceMaskIoU`) it is :func:`host_ious`.

Masks are ``(H, W)`` bool, indexed ``[row, col]``.
"""

from __future__ import annotations

import abc
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import numpy as np

if TYPE_CHECKING:
    import torch

    from sam_gym.backends.base import Prediction

__all__ = ["DeviceFullMask", "DeviceMaskIoU", "MaskReference", "device_ious", "device_reference", "host_ious",
           "host_reference"]


@dataclass(frozen=True, eq=False)
class MaskReference:
    """An episode's ground truth in the form that the IoU counts read (built once per episode).

    Attributes:
        valid: ``(H, W)`` bool non-void pixels (numpy on the host, or a tensor on the backend's device).
        target: ``(H, W)`` bool target pixels that are not void (same kind as ``valid``).
        n_target: ``|target|``.
    """

    valid: Any
    target: Any
    n_target: int


def host_reference(target: np.ndarray, void: np.ndarray) -> MaskReference:
    """The reference of ``(H, W)`` bool ``target`` and ``void`` masks, as host arrays."""
    valid = ~np.asarray(void, dtype=bool)
    inside = np.asarray(target, dtype=bool) & valid
    return MaskReference(valid=valid, target=inside, n_target=int(np.count_nonzero(inside)))


def device_reference(target: np.ndarray, void: np.ndarray, device: Any) -> MaskReference:
    """The reference of ``(H, W)`` bool ``target`` and ``void`` masks, as bool tensors on ``device``."""
    import torch

    host = host_reference(target, void)
    return MaskReference(valid=torch.from_numpy(host.valid).to(device), target=torch.from_numpy(host.target).to(device),
                         n_target=host.n_target)


def _ious(inter: np.ndarray, masked: np.ndarray, n_target: np.ndarray) -> np.ndarray:
    """``inter / (masked + n_target - inter)`` as float64, 1 where the union is empty (integer counts)."""
    union = masked + n_target - inter
    out = np.ones(len(inter), dtype=np.float64)
    nonempty = union > 0
    out[nonempty] = inter[nonempty] / union[nonempty]
    return out


def host_ious(predictions: Sequence[Prediction], references: Sequence[MaskReference]) -> np.ndarray:
    """``(B,)`` float64 IoU of each prediction's best proposal (``prediction.mask()``) with its reference."""
    inter = np.zeros(len(predictions), dtype=np.int64)
    masked = np.zeros(len(predictions), dtype=np.int64)
    for k, (prediction, reference) in enumerate(zip(predictions, references, strict=True)):
        mask = prediction.mask()
        inter[k] = np.count_nonzero(mask & reference.target)
        masked[k] = np.count_nonzero(mask & reference.valid)
    return _ious(inter, masked, np.array([r.n_target for r in references], dtype=np.int64))


class DeviceFullMask(abc.ABC):
    """Base of a ``Prediction.full_mask`` whose masks are upsampled device logits (what :func:`device_ious` batches).

    A subclass holds ``logits``, the ``(K, h, w)`` logits that its masks are upsampled from, and says
    which items can be upsampled together (:meth:`group_key`) and how (:meth:`masks`). Calling it
    with ``k`` gives ``masks(logits[k:k+1])[0]`` on the host, so the one-item mask and the batched
    ones come from the same operations.
    """

    logits: torch.Tensor

    @abc.abstractmethod
    def group_key(self) -> Hashable:
        """Items with equal keys (images of one size) are upsampled by one :meth:`masks` call."""

    @abc.abstractmethod
    def masks(self, logits: torch.Tensor) -> torch.Tensor:
        """``(G, h, w)`` logits of items of this group -> ``(G, H, W)`` bool masks on the device."""

    def __call__(self, k: int) -> np.ndarray:
        """Proposal ``k``'s ``(H, W)`` bool mask on the host (``masks(logits[k:k+1])[0]``)."""
        import torch

        with torch.inference_mode():
            return self.masks(self.logits[k : k + 1])[0].cpu().numpy()


def device_ious(predictions: Sequence[Prediction], references: Sequence[MaskReference],
                stack: bool | None = None) -> np.ndarray:
    """:func:`host_ious`, with the masks upsampled and counted on the device, one host copy of the counts.

    Items whose ``full_mask`` is a :class:`DeviceFullMask` and whose reference holds tensors are
    counted on the device; any other item is counted on the host. With ``stack`` the device items
    are upsampled in groups (:meth:`DeviceFullMask.group_key`: one operation per image size);
    without it one by one. ``None`` stacks on CUDA only, where one operation instead of one per
    item saves kernel launches; on the CPU stacking gained nothing measurable
    (``benchmarks/full_iou_paths.py``).

    Args:
        predictions: ``B`` predictions.
        references: ``B`` references (:meth:`~sam_gym.backends.base.PromptableSegmenter.iou_reference`).
        stack: Upsample the items of one group together (``None``: on CUDA).
    """
    import torch

    out = np.zeros(len(predictions), dtype=np.float64)
    groups: dict[Hashable, list[int]] = {}
    on_host: list[int] = []
    for k, (prediction, reference) in enumerate(zip(predictions, references, strict=True)):
        source = prediction.full_mask
        if isinstance(source, DeviceFullMask) and isinstance(reference.valid, torch.Tensor):
            together = source.logits.is_cuda if stack is None else stack
            groups.setdefault(source.group_key() if together else k, []).append(k)
        else:
            on_host.append(k)
    if on_host:
        out[on_host] = host_ious([predictions[k] for k in on_host], [references[k] for k in on_host])
    if not groups:
        return out
    order: list[int] = []
    counts = []
    with torch.inference_mode():
        for idx in groups.values():
            sources = [cast(DeviceFullMask, predictions[k].full_mask) for k in idx]
            best = [predictions[k].best for k in idx]
            logits = torch.cat([s.logits[b : b + 1] for s, b in zip(sources, best, strict=True)])
            masks = sources[0].masks(logits)
            target = torch.stack([references[k].target for k in idx])
            valid = torch.stack([references[k].valid for k in idx])
            counts.append(torch.stack([(masks & target).sum(dim=(1, 2)), (masks & valid).sum(dim=(1, 2))], dim=1))
            order.extend(idx)
        host = torch.cat(counts).cpu().numpy().astype(np.int64)  # the one device-to-host copy
    n_target = np.array([references[k].n_target for k in order], dtype=np.int64)
    out[order] = _ious(host[:, 0], host[:, 1], n_target)
    return out


class DeviceMaskIoU:
    """Mixin of a backend on a torch ``device`` whose predictions' full masks are :class:`DeviceFullMask` (SAM, SAM 2).

    Overrides :meth:`~sam_gym.backends.base.PromptableSegmenter.iou_reference` (on CUDA the ground
    truth moves to the device once per episode) and ``best_mask_ious`` (:func:`device_ious`). Put
    it before ``PromptableSegmenter`` in the bases.
    """

    device: Any

    def iou_reference(self, target: np.ndarray, void: np.ndarray) -> MaskReference:
        """On CUDA the episode's ground truth as bool tensors on the device; on the CPU as host arrays.

        On the CPU a mask is a host array already, and the host count was 0.2-0.4 ms faster per
        MobileSAM item at batch 1 than the device path (``benchmarks/full_iou_paths.py``; torch's
        small kernels), so :func:`device_ious` counts those items on the host (:func:`host_ious`).
        """
        if getattr(self.device, "type", None) == "cuda":
            return device_reference(target, void, self.device)
        return host_reference(target, void)

    def best_mask_ious(self, predictions: Sequence[Prediction], references: Sequence[MaskReference]) -> np.ndarray:
        """The IoUs of a batch, upsampled and counted on the device (:func:`device_ious`), equal to the host loop's."""
        return device_ious(predictions, references)
