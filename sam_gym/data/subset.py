"""A view of some samples of a dataset (train/test splits, ``--limit``)."""

from __future__ import annotations

from collections.abc import Iterable

from sam_gym.data.base import Sample, SegmentationDataset, sample_source, skipped_files

__all__ = ["Subset", "split"]


class Subset:
    """The samples ``indices`` of ``dataset``, re-indexed from 0.

    Args:
        dataset: The full dataset.
        indices: Indices into ``dataset`` (each in range, order kept).
        name: Name used in reports (default: ``"<dataset>[n]"``).
    """

    def __init__(self, dataset: SegmentationDataset, indices: Iterable[int], name: str | None = None) -> None:
        self.dataset = dataset
        self.indices = [int(i) for i in indices]
        bad = [i for i in self.indices if not 0 <= i < len(dataset)]
        if bad:
            raise ValueError(f"Expected indices in [0, {len(dataset)}), got {bad[:5]}")
        if not self.indices:
            raise ValueError("Expected at least one index for a subset, got none")
        self.name = name or f"{dataset.name}[{len(self.indices)}]"

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> Sample:
        return self.dataset[self.indices[int(index)]]

    def source(self, index: int) -> str:
        """Where sample ``index`` comes from (see :func:`~sam_gym.data.base.sample_source`)."""
        return sample_source(self.dataset, self.indices[int(index)])

    @property
    def skipped(self) -> list[tuple[str, str]]:
        """The files the underlying dataset dropped when it was built (``(file, reason)``)."""
        return skipped_files(self.dataset)


def split(dataset: SegmentationDataset, n_train: int) -> tuple[Subset, Subset]:
    """Split into the first ``n_train`` samples and the rest (deterministic, no shuffling)."""
    if not 0 < n_train < len(dataset):
        raise ValueError(f"Expected n_train in [1, {len(dataset) - 1}] for a dataset of {len(dataset)}, got {n_train}")
    return (Subset(dataset, range(n_train), name=f"{dataset.name}[:{n_train}]"),
            Subset(dataset, range(n_train, len(dataset)), name=f"{dataset.name}[{n_train}:]"))
