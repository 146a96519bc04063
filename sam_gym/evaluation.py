"""Running a policy through episodes and recording what happened at every click.

The single code path that scores every policy, learned or heuristic: anything with SB3's
``predict(observation, state, episode_start, deterministic)`` (an SB3 model, a
:class:`sam_gym.policy.PromptPolicy`) runs through :func:`run_episodes` on the same episodes (dataset
indices and seeds), and its :class:`EpisodeRecord` list is what metrics and reports are built from.
:func:`compare_policies` runs several policies that way with one shared backend and cache, and
measures each one's peak memory (:class:`PeakMemory`); :mod:`sam_gym.reporting` writes the results.
"""

from __future__ import annotations

import inspect
import time
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from sam_gym.data.hashing import sample_digests
from sam_gym.memory import PeakMemory
from sam_gym.protocol import ProtocolPolicy, privileges

if TYPE_CHECKING:
    import gymnasium as gym

    from sam_gym.cache import EmbeddingCache
    from sam_gym.data.base import SegmentationDataset
    from sam_gym.policy import PolicyPredictor

__all__ = [
    "EpisodeRecord",
    "PeakMemory",
    "PolicyRun",
    "PreparedEpisodes",
    "SkippedSample",
    "compare_policies",
    "final_mask_metrics",
    "policy_protocol",
    "prepare_episodes",
    "run_episode",
    "run_episodes",
]


@dataclass
class EpisodeRecord:
    """One episode of one policy.

    Attributes:
        index: Dataset index of the sample.
        image_id: The sample's key (``image_id`` plus ``#instance`` in instance mode).
        seed: The ``reset`` seed.
        init_iou: IoU after the initial prompts (0 without).
        ious: IoU after each click (void excluded).
        rewards: Reward of each click.
        on_target: Whether each click's pixel is ground-truth foreground.
        points: ``(x, y)`` of each click in image pixels.
        labels: Label of each click, 1 foreground / 0 background.
        step_seconds: Wall time of each click: policy ``predict`` plus env ``step``.
        is_success: The env's ``is_success`` at episode end.
        init_points: ``(x, y)`` of the initial prompts (placed at reset; they are not clicks).
        init_labels: Labels of the initial prompts, 1 foreground / 0 background.
        masks: With ``record_masks``, the ``(H, W)`` bool mask (indexed ``[row, col]``) after the
            initial prompts (all ``False`` without) followed by the mask after each click; else ``None``.
        task_metrics: With ``task_metrics``, binary-task scores of the final mask (``mae``, ``f_beta``,
            ``e_measure``, ``s_measure``, ``weighted_f``, ``ber`` and the BER counts; see
            :func:`final_mask_metrics`); else empty.
        image_sha256: Content hash of the image (:func:`sam_gym.data.hashing.sample_digests`); empty when
            not recorded.
        sample_sha256: Content hash of the sample (image, ground truth and void; see ``image_sha256``),
            which identifies the episode's task across runs; empty when not recorded.
    """

    index: int
    image_id: str
    seed: int
    init_iou: float = 0.0
    ious: list[float] = field(default_factory=list)
    rewards: list[float] = field(default_factory=list)
    on_target: list[bool] = field(default_factory=list)
    points: list[tuple[float, float]] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    step_seconds: list[float] = field(default_factory=list)
    is_success: bool = False
    init_points: list[tuple[float, float]] = field(default_factory=list)
    init_labels: list[int] = field(default_factory=list)
    masks: list[np.ndarray] | None = None
    task_metrics: dict[str, float] = field(default_factory=dict)
    image_sha256: str = ""
    sample_sha256: str = ""

    @property
    def total_reward(self) -> float:
        """Sum of the rewards (the episode return)."""
        return float(np.sum(self.rewards)) if self.rewards else 0.0


def _action_masks_kwargs(policy: Any, env: Any) -> dict[str, Any]:
    """``action_masks=`` for policies whose ``predict`` takes it (sb3-contrib ``MaskablePPO``)."""
    if "action_masks" in inspect.signature(policy.predict).parameters and env.unwrapped.action_mode != "point":
        return {"action_masks": env.unwrapped.action_masks()}
    return {}


def final_mask_metrics(mask: np.ndarray, target: np.ndarray, void: np.ndarray | None) -> dict[str, float]:
    """Binary-task (saliency-style) scores of a final ``(H, W)`` bool mask against the ground truth.

    Masks are indexed ``[row, col]``; ``void`` pixels are excluded. The mask is binary, so the
    thresholded metrics use it as it is (an empty mask stays empty; see :mod:`sam_gym.metrics.saliency`).

    Returns:
        ``mae``, ``f_beta`` (``beta2 = 0.3``), ``e_measure``, ``s_measure`` (``alpha = 0.5``),
        ``weighted_f`` (``beta2 = 1``), ``ber`` (this image's BER, in percent) and the image's BER
        counts ``ber_tp``, ``ber_tn``, ``ber_n_pos``, ``ber_n_neg`` (threshold 0.5), from which
        :mod:`sam_gym.reporting` computes the data-set (pooled) BER.
    """
    from sam_gym.metrics import ber_counts, e_measure, f_beta, mae, pooled_ber, s_measure, weighted_f_measure

    void = void if void is not None and np.any(void) else None
    counts = ber_counts(mask, target, void)
    return {
        "mae": mae(mask, target, void),
        "f_beta": f_beta(mask, target, void=void),
        "e_measure": e_measure(mask, target, void),
        "s_measure": s_measure(mask, target, void),
        "weighted_f": weighted_f_measure(mask, target, void),
        "ber": pooled_ber([counts]),
        **{f"ber_{k}": v for k, v in counts._asdict().items()},
    }


def run_episode(
    policy: PolicyPredictor, env: gym.Env[Any, Any], index: int, seed: int, deterministic: bool = True,
    record_masks: bool = False,
    task_metrics: bool = False,
) -> EpisodeRecord:
    """Run one episode of ``policy`` on sample ``index`` of ``env``'s dataset.

    Points are ``(x, y)`` in image pixels (x right, y down); masks are ``(H, W)`` indexed ``[row, col]``.

    Args:
        policy: Anything with SB3's ``predict`` signature (bound to ``env`` if it has ``bind``).
        env: A ``SamPromptEnv`` (or a wrapper of one).
        index: Dataset index (``reset(options={"index": index})``).
        seed: ``reset`` seed (initial prompts, policy randomness drawn from the env).
        deterministic: Passed to ``predict``.
        record_masks: Keep the mask after the initial prompts and after each click in
            ``record.masks`` (for episode strips; costs one ``(H, W)`` bool copy per click).
        task_metrics: Score the final mask with :func:`final_mask_metrics` into ``record.task_metrics``.
    """
    from sam_gym.envs import SamPromptEnv

    unwrapped = env.unwrapped
    if not isinstance(unwrapped, SamPromptEnv):
        raise TypeError(f"Expected a SamPromptEnv (or a wrapper of one) to evaluate in, got {type(unwrapped).__name__}")
    obs, info = env.reset(seed=seed, options={"index": index})
    view = unwrapped.episode_view()
    record = EpisodeRecord(index=index, image_id=view.sample.key, seed=seed, init_iou=float(info["iou"]),
                           init_points=[(float(x), float(y)) for x, y in view.points],
                           init_labels=[int(v) for v in view.labels])
    record.image_sha256, record.sample_sha256 = sample_digests(view.sample)
    if record_masks:
        record.masks = [view.mask.copy()]
    episode_start = np.array([True])
    state = None
    done = False
    while not done:
        start = time.perf_counter()
        action, state = policy.predict(obs, state=state, episode_start=episode_start, deterministic=deterministic,
                                       **_action_masks_kwargs(policy, env))
        obs, reward, terminated, truncated, info = env.step(np.asarray(action).squeeze() if np.ndim(action) else action)
        record.step_seconds.append(time.perf_counter() - start)
        episode_start = np.array([False])
        record.ious.append(float(info["iou"]))
        record.rewards.append(float(reward))
        record.on_target.append(bool(info["on_target"]))
        x, y = info["point"]
        record.points.append((float(x), float(y)))
        record.labels.append(int(info["label"]))
        if record.masks is not None:
            record.masks.append(unwrapped.episode_view().mask.copy())
        done = terminated or truncated
    record.is_success = bool(info.get("is_success", False))
    if task_metrics:
        view = unwrapped.episode_view()
        record.task_metrics = final_mask_metrics(view.mask, view.sample.target, view.sample.void)
    return record


def run_episodes(
    policy: PolicyPredictor, env: gym.Env[Any, Any], indices: Iterable[int], seeds: Iterable[int] = (0,),
    deterministic: bool = True,
    progress: Callable[[], Any] | None = None, record_masks: int = 0, task_metrics: bool = False,
) -> list[EpisodeRecord]:
    """Run ``policy`` on every ``(seed, index)`` pair, binding it to ``env`` first if it has ``bind``.

    Episodes run seed by seed, each over all ``indices`` in order, so the first episodes are the
    first seed's.

    Args:
        policy: Anything with SB3's ``predict`` signature.
        env: A ``SamPromptEnv`` (or a wrapper of one).
        indices: Dataset indices, the same for every policy being compared.
        seeds: ``reset`` seeds; each index is run once per seed.
        deterministic: Passed to ``predict``.
        progress: Optional callable called with no argument after each episode (a progress bar's update).
        record_masks: Number of first episodes whose per-click masks are kept (see :func:`run_episode`).
        task_metrics: Score every episode's final mask (see :func:`final_mask_metrics`).
    """
    if hasattr(policy, "bind"):
        policy.bind(env)
    records: list[EpisodeRecord] = []
    indices = list(indices)
    for seed in seeds:
        for index in indices:
            records.append(run_episode(policy, env, int(index), int(seed), deterministic,
                                       record_masks=len(records) < record_masks, task_metrics=task_metrics))
            if progress is not None:
                progress()
    return records


def _describe(value: Any) -> str:
    """Name of an env option for reports: the string itself, or a callable's ``name`` / ``__name__``."""
    if isinstance(value, str):
        return value
    name = getattr(value, "name", None) or getattr(value, "__name__", None)
    owner = getattr(value, "__self__", None)  # a bound method: say whose (e.g. "Recalibrator.labeller")
    if owner is not None:
        return f"{type(owner).__name__}.{name}"
    if isinstance(name, str):
        return name
    kind = type(value)  # a callable object: its module and class, e.g. "srm.Labeller"
    return f"{kind.__module__.rsplit('.', 1)[-1]}.{kind.__name__.lstrip('_')}"


def policy_protocol(policy: Any, env: Any) -> dict[str, Any]:
    """How a policy's episodes were run, for reports.

    Returns:
        ``{"oracle", "labels", "init_prompts", "action_mode", "privileged", "protocol_from"}``.
        ``oracle`` is the policy's own ``oracle`` flag (it reads ground truth). ``labels`` says
        where click labels come from: the policy's ``labels`` attribute when it declares one;
        ``"policy"`` when the action carries the label (``patch_label`` / ``point`` modes); else
        the env's ``label_mode`` (``"oracle"`` = read from the ground truth at the clicked pixel,
        ``"positive"``, or a callable's name). ``init_prompts`` is the env's option (``"gt_pair"``:
        one random ground truth foreground and one background pixel at reset; ``"none"``; or a
        callable's name). ``privileged`` lists what the episodes read from the ground truth
        (:data:`sam_gym.protocol.PRIVILEGES` keys: ``"oracle_labels"``, ``"gt_init_prompts"``,
        ``"episode_view"``; empty for a row on a deployable footing). ``protocol_from`` names the
        policy whose labels and initial prompts a :class:`~sam_gym.protocol.ProtocolPolicy` ran
        under, else ``None``.
    """
    unwrapped = env.unwrapped
    labels = getattr(policy, "labels", None)
    if not isinstance(labels, str):
        labels = "policy" if unwrapped.action_mode != "patch" else _describe(unwrapped.label_mode)
    oracle = bool(getattr(policy, "oracle", False))
    init_prompts = _describe(unwrapped.init_prompts)
    return {
        "oracle": oracle,
        "labels": labels,
        "init_prompts": init_prompts,
        "action_mode": unwrapped.action_mode,
        "privileged": privileges(oracle=oracle, labels=labels, init_prompts=init_prompts),
        "protocol_from": policy.protocol_name if isinstance(policy, ProtocolPolicy) else None,
    }


@dataclass
class PolicyRun:
    """The episodes of one policy in a comparison, with how they were run.

    Attributes:
        name: The policy's name in reports (its spec).
        records: One record per ``(seed, index)`` episode.
        protocol: :func:`policy_protocol` of the policy and its env.
        peak_mem_mb: :class:`PeakMemory` peak RSS (MiB) while its episodes ran.
        peak_gpu_mem_mb: Peak CUDA memory (MiB) or ``None`` off GPU.
        memory_method: :attr:`PeakMemory.method`.
        description: The policy's ``description`` or class name.
    """

    name: str
    records: list[EpisodeRecord]
    protocol: dict[str, Any]
    peak_mem_mb: float
    peak_gpu_mem_mb: float | None
    memory_method: str
    description: str


@dataclass(frozen=True)
class SkippedSample:
    """A sample left out of an evaluation because its files are unusable.

    Attributes:
        file: The file (or ``"<dataset>[index]"`` when the dataset names no file).
        reason: What is wrong with it.
        index: Its dataset index, or ``None`` for a file the dataset dropped when it was built.
    """

    file: str
    reason: str
    index: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """``{"file", "reason", "index"}``, as recorded in ``results.json``."""
        return {"file": self.file, "reason": self.reason, "index": self.index}


@dataclass
class PreparedEpisodes:
    """What :func:`prepare_episodes` found and did.

    Attributes:
        indices: The usable dataset indices, in the order given.
        skipped: The files dropped when the dataset was built, then the samples skipped here.
        encode_seconds: Mean seconds per image that had to be encoded (0.0 when all were cached).
    """

    indices: list[int]
    skipped: list[SkippedSample]
    encode_seconds: float


def prepare_episodes(
    cache: EmbeddingCache, dataset: SegmentationDataset, indices: Iterable[int], *, grid: tuple[int, int] = (10, 10),
    on_error: str = "raise", progress: Callable[[], Any] | None = None,
) -> PreparedEpisodes:
    """Check every sample an evaluation will use and encode its image into ``cache`` up front.

    Each sample is read once, checked as the env checks it at reset (:func:`~sam_gym.data.check_sample`:
    a foreground and a background pixel; an image no smaller than the ``(rows, cols)`` patch grid),
    and its image is encoded (the backend refuses images it cannot encode), so that policies are
    timed on decoding only and no episode fails half-way through a comparison.

    Args:
        cache: The :class:`~sam_gym.cache.EmbeddingCache` the episodes will use.
        dataset: The dataset.
        indices: The dataset indices to use.
        grid: The patch grid ``(rows, cols)`` of the envs.
        on_error: ``"raise"``: an unusable sample raises its ``ValueError``. ``"skip"``: it is left
            out with one warning that names its file and the reason, and listed in ``skipped``.
        progress: Optional callable called with no argument after each sample.

    Raises:
        ValueError: On an unusable sample with ``on_error="raise"``, or when no sample is usable.
    """
    from sam_gym.data.base import check_sample, sample_source, skipped_files
    from sam_gym.grid import PatchGrid

    if on_error not in ("raise", "skip"):
        raise ValueError(f"Expected on_error 'raise' or 'skip', got {on_error!r}")
    indices = [int(i) for i in indices]
    skipped = [SkippedSample(file, reason) for file, reason in skipped_files(dataset)]
    usable: list[int] = []
    seconds, encoded = 0.0, 0
    for index in indices:
        try:
            sample = check_sample(dataset[index], where=f"{dataset.name}[{index}]")
            PatchGrid(int(grid[0]), int(grid[1]), *sample.target.shape)
            if not cache.contains(sample.image):
                start = time.perf_counter()
                cache.get(sample.image)  # the backend refuses images it cannot encode (e.g. too small)
                seconds += time.perf_counter() - start
                encoded += 1
        except ValueError as exc:
            if on_error == "raise":
                raise
            file = sample_source(dataset, index)
            skipped.append(SkippedSample(file, str(exc), index))
            warnings.warn(f"Skipping sample {index} of {dataset.name} ({file}): {exc}", stacklevel=2)
        else:
            usable.append(index)
        if progress is not None:
            progress()
    if not usable:
        example = f" (e.g. {skipped[-1].file}: {skipped[-1].reason})" if skipped else ""
        raise ValueError(f"Expected at least one usable sample in {dataset.name}, got none of {len(indices)}{example}")
    return PreparedEpisodes(indices=usable, skipped=skipped, encode_seconds=seconds / encoded if encoded else 0.0)


def compare_policies(
    policies: Mapping[str, PolicyPredictor], dataset: SegmentationDataset, cache: EmbeddingCache, *, max_clicks: int,
    grid: tuple[int, int] = (10, 10),
    indices: Iterable[int], seeds: Iterable[int] = (0,), record_masks: int = 0, task_metrics: bool = False,
    env_kwargs: Mapping[str, Any] | None = None, progress: Callable[[str], Callable[[], Any]] | None = None,
) -> list[PolicyRun]:
    """Run several policies on the same episodes with one shared backend (through ``cache``).

    Each policy gets its own ``SamPromptEnv(dataset, cache=cache, max_clicks, grid, **env_kwargs,
    **policy.env_kwargs)`` (``env_kwargs`` may be a class attribute or an instance property; a
    policy without it gets ``{}``) and runs :func:`run_episodes` on every ``(seed, index)`` pair.

    Args:
        policies: Report name -> policy (SB3 ``predict`` signature).
        dataset: The dataset every env is built on.
        cache: The shared :class:`~sam_gym.cache.EmbeddingCache` (it carries the backend).
        max_clicks: Click budget of every episode.
        grid: Patch grid ``(rows, cols)``.
        indices: Dataset indices (the same for every policy).
        seeds: ``reset`` seeds.
        record_masks: Keep per-click masks for this many first episodes of each policy.
        task_metrics: Score each final mask with :func:`final_mask_metrics`.
        env_kwargs: Extra env options shared by all policies (a policy's own ``env_kwargs`` win).
        progress: Optional ``progress(name)`` returning the per-episode callback for that policy.
    """
    from sam_gym.envs import SamPromptEnv

    indices, seeds = [int(i) for i in indices], [int(s) for s in seeds]
    runs = []
    for name, policy in policies.items():
        kwargs = {**(env_kwargs or {}), **dict(getattr(policy, "env_kwargs", None) or {})}
        rows, cols = grid
        env = SamPromptEnv(dataset=dataset, cache=cache, max_clicks=max_clicks, grid=(int(rows), int(cols)), **kwargs)
        try:
            with PeakMemory() as memory:
                records = run_episodes(policy, env, indices, seeds, progress=progress(name) if progress else None,
                                       record_masks=record_masks, task_metrics=task_metrics)
        finally:
            # Policies that change the shared backend (test-time adaptation) restore it here, so that
            # the policies scored after them see the original weights.
            if hasattr(policy, "close"):
                policy.close()
        description = getattr(policy, "description", None) or type(policy).__name__
        runs.append(PolicyRun(name=name, records=records, protocol=policy_protocol(policy, env),
                              peak_mem_mb=memory.peak_mb, peak_gpu_mem_mb=memory.gpu_peak_mb,
                              memory_method=memory.method, description=str(description)))
        env.close()
    return runs
