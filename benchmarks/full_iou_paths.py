"""The full-resolution IoU's two paths on SAM, timed against each other on the CPU: one run, printed.

``python benchmarks/full_iou_paths.py`` (MobileSAM ViT-T, random weights, one torch thread, the
benchmark's ``synthetic-shapes`` images): per batch (1 and 8), the median over 30 interleaved
repeats of the host count (``host_ious``, one ``prediction.mask()`` per item, what the CPU uses)
and of the device count with the items of one image size stacked (``device_ious(stack=True)``,
what CUDA uses), after checking that both give the same IoUs. Results are in ``docs/benchmarks.md``.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch

from sam_gym.backends.base import Prediction
from sam_gym.backends.mask_iou import device_ious, device_reference, host_ious, host_reference
from sam_gym.backends.sam import SamBackend
from sam_gym.benchmark import InMemory
from sam_gym.data import make_dataset


def _medians(backend: SamBackend, samples: list[Any]) -> dict[str, float]:
    """Median ms of each path over 30 interleaved repeats on ``samples`` (one decoded click each)."""
    n = len(samples)
    embeddings = [backend.encode(s.image) for s in samples]
    decoded = backend.decode_batch(embeddings, [np.array([[40.0, 50.0]], np.float32)] * n, [np.array([1])] * n)
    host_refs = [host_reference(s.target, s.void) for s in samples]
    device_refs = [device_reference(s.target, s.void, backend.device) for s in samples]

    def fresh() -> list[Prediction]:  # no memoised mask: each path computes its own
        return [Prediction(p.scores, p.low_res_logits, p.full_mask) for p in decoded]

    paths = {"host": lambda: host_ious(fresh(), host_refs),
             "device, stacked": lambda: device_ious(fresh(), device_refs, stack=True)}
    assert paths["host"]().tolist() == paths["device, stacked"]().tolist()
    times: dict[str, list[float]] = {name: [] for name in paths}
    for _ in range(30):
        for name, path in paths.items():
            start = time.perf_counter()
            path()
            times[name].append(time.perf_counter() - start)
    return {name: 1e3 * float(np.median(t)) for name, t in times.items()}


def main() -> None:
    """Print the median ms of each path per batch size."""
    torch.set_num_threads(1)
    backend = SamBackend(model_type="vit_t", checkpoint="random", device="cpu")
    images = InMemory(make_dataset("synthetic-shapes"), 8)
    for batch in (1, 8):
        medians = _medians(backend, [images[i % len(images)] for i in range(batch)])
        print(f"batch {batch}: " + ", ".join(f"{name} {ms:.2f} ms" for name, ms in medians.items()))


if __name__ == "__main__":
    main()
