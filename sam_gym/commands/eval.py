"""``sam-gym eval``: score prompting policies on the same episodes and write tables, a plot and episode strips.

Every policy runs on the same episodes (the first ``--samples`` samples x ``--seeds``) with one
shared backend and embedding cache, through :func:`sam_gym.evaluation.run_episodes`. With
``--protocol SPEC`` every location-only policy (random, grid, a plain SB3 model) runs under the
labels and initial prompts of the policy ``SPEC`` (:func:`sam_gym.protocol.apply_protocol`); rows
whose episodes read ground truth are marked. Samples that a learned policy was trained on (matched
by content, :mod:`sam_gym.holdout`) are left out unless ``--include-train``. Outputs in
``--out``: ``results.json``, ``results.md``, ``iou_vs_clicks.png`` and, with ``--save-episodes K``,
``episodes/*.png`` strips (see :mod:`sam_gym.reporting`). Points are ``(x, y)`` in image pixels;
masks are ``(H, W)`` indexed ``[row, col]``.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sam_gym.commands.common import (
    add_backend_arguments,
    add_dataset_arguments,
    backend_from_args,
    canonical_command,
    check_out,
    dataset_from_args,
)

if TYPE_CHECKING:
    from sam_gym.holdout import HeldOut

__all__ = ["EvalSettings", "build_policies", "evaluate", "parse_grid", "parse_seeds", "with_protocol"]

HELP = "score prompting policies on the same episodes; write results.json/.md, a plot and episode strips"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the command's arguments."""
    parser.add_argument("--policy", action="append", required=True, metavar="NAME[:ARG]",
                        help="policy to score (repeatable): random, grid, clicker, clicker-tta, aop, sapnet, "
                             "alignsam:RUN_DIR, or module.path:Class[@ARG]")
    add_dataset_arguments(parser, default=None, limit=False)
    parser.add_argument("--on-error", choices=("skip", "raise"), default="skip",
                        help="samples whose files are unusable (truncated, no background, smaller than the grid): "
                             "skip them with a warning and list them in results.json, or stop (default: %(default)s)")
    add_backend_arguments(parser)
    parser.add_argument("--max-clicks", type=int, default=20, help="click budget per episode (default: %(default)s)")
    parser.add_argument("--samples", type=int, default=None, metavar="N",
                        help="use the first N samples of the dataset (default: all); each runs once per seed")
    parser.add_argument("--episodes", type=int, default=None, help=argparse.SUPPRESS)  # deprecated: --samples
    parser.add_argument("--protocol", default=None, metavar="SPEC",
                        help="run every location-only policy (random, grid, a plain SB3 model, ...) with the click "
                             "labels and initial prompts of the policy SPEC, e.g. alignsam:RUN_DIR (random patches "
                             "with its SRM: the paper's 'w/o RL' row); default: each policy's own env options "
                             "(oracle labels and a ground-truth initial pair for random and grid: marked privileged)")
    parser.add_argument("--include-train", action="store_true",
                        help="also score the samples a learned policy was trained on (matched by content hash; left "
                             "out by default); its row is marked in the report")
    parser.add_argument("--target-iou", type=float, default=None, metavar="T",
                        help="end every episode once its IoU reaches T (NoC protocol; e.g. 0.85 with 20 clicks, 0.90 "
                             "with 30). Default: no early stop, except for policies that need one (clicker-tta stops "
                             "at 0.85)")
    parser.add_argument("--seeds", default="0", help="comma-separated reset seeds, each sample runs once per seed "
                                                      "(default: %(default)s)")
    parser.add_argument("--grid", default="10x10", help="patch grid ROWSxCOLS (default: %(default)s)")
    parser.add_argument("--save-episodes", type=int, default=0, metavar="K",
                        help="draw the first K episodes of each policy into OUT/episodes/ (default: 0)")
    parser.add_argument("--task-metrics", choices=("auto", "on", "off"), default="auto",
                        help="MAE, F-beta, E-measure, BER of the final masks; auto = on for binary folder "
                             "datasets (default: %(default)s)")
    parser.add_argument("--cache-dir", default=None, help="on-disk embedding cache folder (default: memory only)")
    parser.add_argument("--out", default="runs/eval", help="output folder (default: %(default)s)")


def parse_grid(text: str) -> tuple[int, int]:
    """Parse ``"ROWSxCOLS"`` (e.g. ``"10x10"``) into ``(rows, cols)``."""
    parts = str(text).lower().split("x")
    if len(parts) != 2 or not all(p.strip().isdigit() and int(p) >= 1 for p in parts):
        raise ValueError(f"Expected --grid as ROWSxCOLS with positive integers (e.g. 10x10), got {text!r}")
    return int(parts[0]), int(parts[1])


def parse_seeds(text: str) -> list[int]:
    """Parse ``"0,1,2"`` into ``[0, 1, 2]`` (distinct non-negative integers)."""
    try:
        seeds = [int(s) for s in str(text).split(",") if s.strip()]
    except ValueError:
        seeds = []
    if not seeds or any(s < 0 for s in seeds) or len(set(seeds)) != len(seeds):
        raise ValueError(f"Expected --seeds as distinct comma-separated non-negative integers (e.g. 0,1,2), "
                         f"got {text!r}")
    return seeds


def build_policies(specs: Sequence[str], target_iou: float | None = None) -> dict[str, Any]:
    """Build each policy spec with :func:`sam_gym.policies.make_policy`, keyed by its spec.

    A policy whose own ``env_kwargs`` set ``target_iou`` (``clicker-tta``: the paper stops at the
    target IoU) keeps that default unless ``target_iou`` (``--target-iou``) is given; then it is
    built with ``target_iou=`` that value, so that its episodes stop where every other policy's do.

    Raises:
        ValueError: On a repeated spec, an unknown name, a registered policy whose module is not
            importable, or a policy that sets its own ``target_iou`` and cannot take another one.
    """
    from sam_gym.policies import POLICIES, make_policy

    if len(set(specs)) != len(specs):
        raise ValueError(f"Expected each --policy once, got {list(specs)}")
    policies = {}
    for spec in specs:
        try:
            policy = make_policy(spec)
            own = dict(getattr(policy, "env_kwargs", None) or {})
            if target_iou is not None and own.get("target_iou", target_iou) != target_iou:
                try:
                    policy = make_policy(spec, target_iou=target_iou)
                except TypeError as exc:
                    raise ValueError(f"Expected policy {spec!r}, which stops at target_iou={own['target_iou']}, to "
                                     f"take target_iou={target_iou} (--target-iou), got: {exc}") from exc
        except ImportError as exc:
            if spec.partition(":")[0] not in POLICIES:
                raise
            raise ValueError(f"Policy {spec!r} is registered but could not be imported ({exc})") from exc
        policies[spec] = policy
    return policies


def with_protocol(policies: dict[str, Any], spec: str) -> dict[str, Any]:
    """Run the location-only ``policies`` under the labels and initial prompts of the policy ``spec``.

    The protocol policy is the one of ``policies`` with that spec when there is one (its SRM is then
    loaded once), else it is built from ``spec`` and not scored.

    Raises:
        ValueError: If ``spec`` cannot be built, provides no labels or initial prompts, or no policy
            is location-only (see :func:`sam_gym.protocol.apply_protocol`).
    """
    from sam_gym.protocol import ProtocolPolicy, apply_protocol

    protocol = policies[spec] if spec in policies else build_policies([spec])[spec]
    wrapped = apply_protocol(policies, protocol, spec)
    if not any(isinstance(policy, ProtocolPolicy) for policy in wrapped.values()):
        raise ValueError(f"Expected a location-only --policy (e.g. random, grid) to run under --protocol {spec}, "
                         f"got none among {list(policies)}")
    return wrapped


@dataclass
class EvalSettings:
    """What an evaluation runs.

    Attributes:
        max_clicks: Click budget.
        indices: Dataset indices.
        seeds: Reset seeds.
        grid: Patch grid ``(rows, cols)``.
        save_episodes: Episode strips per policy.
        task_metrics: Score final masks with the binary-task metrics.
        command: The command line recorded in the results.
        on_error: ``"skip"``: unusable samples are left out with one warning each and listed under
            ``skipped`` in the results; ``"raise"``: the first one stops the evaluation before any
            episode (see :func:`sam_gym.evaluation.prepare_episodes`).
        dataset_path: Where the dataset was read from (resolved folder or annotation file), recorded
            in the results; ``None`` for a built-in dataset.
        held_out: What :func:`sam_gym.holdout.select_held_out` chose (recorded under ``held_out``
            in the results, and as ``train_samples_scored`` in the rows of the policies that
            declare training samples); ``None`` when the indices were chosen otherwise.
        target_iou: End every episode once its IoU reaches it (``None``: at the click budget only,
            unless a policy's own ``env_kwargs`` set it).
    """

    max_clicks: int
    indices: list[int]
    seeds: list[int]
    grid: tuple[int, int] = (10, 10)
    save_episodes: int = 0
    task_metrics: bool = False
    command: str = ""
    on_error: str = "skip"
    dataset_path: str | None = None
    held_out: HeldOut | None = None
    target_iou: float | None = None


def evaluate(policies: dict[str, Any], dataset: Any, backend: Any, settings: EvalSettings, out: str | Path,
             cache_dir: str | Path | None = None, show_progress: bool = True) -> dict[str, Any]:
    """Run the comparison and write ``results.json``, ``results.md``, the plot and episode strips into ``out``.

    Args:
        policies: Report name -> policy.
        dataset: The dataset (episodes are ``settings.indices`` x ``settings.seeds``).
        backend: The one backend shared by every policy's env.
        settings: See :class:`EvalSettings`.
        out: Output folder.
        cache_dir: Optional on-disk embedding cache.
        show_progress: Show tqdm progress bars.

    Returns:
        The results dict (also in ``out/results.json``), with ``skipped``: ``{"file", "reason",
        "index"}`` of every sample left out (``index`` is ``None`` for files the dataset dropped when
        it was built); ``protocol``: the spec whose labels and initial prompts the location-only
        policies ran under (``None``: their own); with ``settings.held_out``, ``held_out`` (see
        :meth:`sam_gym.holdout.HeldOut.to_dict`) and, in the row of each policy that declares
        training samples, ``train_samples_scored``: the number of scored samples that are its
        training samples (``None`` when its run cannot tell).

    Raises:
        ValueError: Before any image is encoded, if a policy's ``check_backend(backend)`` refuses
            the backend (``clicker-tta`` needs a float32 SAM backend).
    """
    from tqdm import tqdm

    from sam_gym.cache import EmbeddingCache
    from sam_gym.evaluation import compare_policies, prepare_episodes
    from sam_gym.reporting import build_results, plot_iou_vs_clicks, save_episode_strips, write_results

    for policy in policies.values():  # fail before any image is encoded (e.g. clicker-tta on a non-SAM backend)
        check_backend = getattr(policy, "check_backend", None)
        if check_backend is not None:
            check_backend(backend)
    out = Path(out)
    n_images = len(settings.indices)
    cache = EmbeddingCache(backend, cache_dir=cache_dir, max_items=max(64, min(n_images, 1024)))
    with tqdm(total=n_images, desc=f"encode ({backend.name})", unit="img", disable=not show_progress) as bar:
        prepared = prepare_episodes(cache, dataset, settings.indices, grid=settings.grid, on_error=settings.on_error,
                                    progress=bar.update)
    indices = prepared.indices
    n_images = len(indices)
    n_episodes = n_images * len(settings.seeds)
    with tqdm(total=n_episodes * len(policies), desc="episodes", unit="ep", disable=not show_progress) as bar:
        def progress(name: str) -> Any:
            bar.set_postfix_str(name)
            return bar.update

        start = time.perf_counter()
        runs = compare_policies(policies, dataset, cache, max_clicks=settings.max_clicks, grid=settings.grid,
                                indices=indices, seeds=settings.seeds, record_masks=settings.save_episodes,
                                task_metrics=settings.task_metrics, progress=progress,
                                env_kwargs=None if settings.target_iou is None else {"target_iou": settings.target_iou})
        elapsed = time.perf_counter() - start
    results = build_results(runs, backend=backend, dataset=str(dataset.name), max_clicks=settings.max_clicks,
                            command=settings.command, dataset_path=settings.dataset_path,
                            extra={"grid": list(settings.grid), "seeds": settings.seeds, "n_samples": n_images,
                                   "indices": indices,
                                   "skipped": [s.to_dict() for s in prepared.skipped],
                                   "encode_ms_per_image": 1000.0 * prepared.encode_seconds,
                                   "episodes_seconds": elapsed})
    _record_footing(results, settings.held_out, set(indices))
    write_results(results, out)
    plot_iou_vs_clicks(results, out / "iou_vs_clicks.png")
    if settings.save_episodes:
        for run in runs:
            save_episode_strips(run, dataset, out / "episodes", limit=settings.save_episodes,
                                backend=backend.description)
    return results


def _record_footing(results: dict[str, Any], held_out: HeldOut | None, scored: set[int]) -> None:
    """Add ``protocol``, ``held_out`` and each learned row's ``train_samples_scored`` to ``results``."""
    protocols = {e.get("protocol_from") for e in results["policies"].values()} - {None}
    results["protocol"] = ", ".join(sorted(protocols)) or None
    if held_out is None:
        return
    results["held_out"] = held_out.to_dict()
    for name, info in held_out.policies.items():
        if name in results["policies"]:
            results["policies"][name]["train_samples_scored"] = (
                len(scored.intersection(info.scored)) if info.known else None)


def _task_metrics_enabled(choice: str, dataset: Any) -> bool:
    if choice != "auto":
        return choice == "on"
    from sam_gym.data import FolderDataset

    base = getattr(dataset, "dataset", dataset)  # a Subset's underlying dataset
    return isinstance(base, FolderDataset) and base.mode == "binary"


def _dataset_path(dataset: str) -> str | None:
    """The resolved path of a folder or annotation-file ``--dataset``; ``None`` for a built-in name."""
    path = Path(str(dataset)).expanduser()
    return str(path.resolve()) if path.exists() else None


def _held_out(policies: dict[str, Any], dataset: Any, limit: int | None, include_train: bool) -> HeldOut:
    """Choose the samples to score (:func:`sam_gym.holdout.select_held_out`) and say what was left out or kept.

    Raises:
        ValueError: If every candidate sample is a training sample.
    """
    from sam_gym.holdout import select_held_out

    held_out = select_held_out(policies, dataset, range(len(dataset)), limit=limit, include_train=include_train)
    for name, info in held_out.policies.items():  # a run without sample hashes got a warning
        if info.known and info.scored:
            print(f"{name}: scoring {len(info.scored)} of its training samples (--include-train); "
                  f"its row is marked in the report")
    if held_out.excluded:
        owners = [name for name, info in held_out.policies.items() if info.excluded]
        print(f"left out {len(held_out.excluded)} sample(s) of {dataset.name} that are training samples of "
              f"{', '.join(owners)} (matched by content): scoring held-out samples only (--include-train scores "
              f"them too)")
    if not held_out.indices:
        raise ValueError(f"Expected held-out samples to score in {dataset.name}, got none: all "
                         f"{len(held_out.excluded)} candidate samples are training samples of "
                         f"{', '.join(n for n, i in held_out.policies.items() if i.excluded)}; evaluate on other "
                         f"data, or pass --include-train to score them anyway (the row is then marked)")
    return held_out


def run(args: argparse.Namespace) -> int:
    """Validate everything cheap first, then build the backend once and score every policy."""
    check_out(args.out)
    grid = parse_grid(args.grid)
    seeds = parse_seeds(args.seeds)
    if args.max_clicks < 1:
        raise ValueError(f"Expected --max-clicks >= 1, got {args.max_clicks}")
    if args.episodes is not None:
        if args.samples is not None and args.samples != args.episodes:
            raise ValueError(f"Expected --samples alone (--episodes is its deprecated name), got --samples "
                             f"{args.samples} and --episodes {args.episodes}")
        print("sam-gym eval: --episodes is deprecated (it selects the first N samples); use --samples",
              file=sys.stderr)
        args.samples, args.episodes = args.episodes, None
    if args.samples is not None and args.samples < 1:
        raise ValueError(f"Expected --samples >= 1, got {args.samples}")
    if args.save_episodes < 0:
        raise ValueError(f"Expected --save-episodes >= 0, got {args.save_episodes}")
    if args.target_iou is not None and not 0.0 < args.target_iou <= 1.0:
        raise ValueError(f"Expected --target-iou in (0, 1], got {args.target_iou}")
    policies = build_policies(args.policy, target_iou=args.target_iou)
    if args.protocol is not None:
        policies = with_protocol(policies, args.protocol)
    # --samples N counts the samples scored: the first N of the dataset that are not left out.
    dataset = dataset_from_args(argparse.Namespace(dataset=args.dataset, image_dir=args.image_dir, void=args.void,
                                                   on_error=args.on_error, limit=None))
    held_out = _held_out(policies, dataset, args.samples, args.include_train)
    backend = backend_from_args(args)
    settings = EvalSettings(max_clicks=args.max_clicks, indices=held_out.indices, seeds=seeds, grid=grid,
                            save_episodes=args.save_episodes,
                            task_metrics=_task_metrics_enabled(args.task_metrics, dataset),
                            command=canonical_command("sam-gym eval", add_arguments, args), on_error=args.on_error,
                            dataset_path=_dataset_path(args.dataset), held_out=held_out, target_iou=args.target_iou)
    results = evaluate(policies, dataset, backend, settings, args.out, cache_dir=args.cache_dir)
    from sam_gym.reporting import results_markdown

    print(results_markdown(results))
    print(f"wrote {Path(args.out) / 'results.json'}, results.md, iou_vs_clicks.png"
          + (f", episodes/ ({args.save_episodes} per policy)" if args.save_episodes else "")
          + (f"; skipped {len(results['skipped'])} unusable file(s), listed there" if results["skipped"] else ""))
    return 0
