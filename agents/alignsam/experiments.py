r"""Held-out evaluation of AlignSAM against the random policy, with the paper's Table-2 ablations.

For each training seed, an agent is trained (or reused when its run folder is complete) on
``n_train`` samples of the training dataset (the run's split: a seeded random subset by default,
the same for every training seed), then every condition runs through
:func:`sam_gym.evaluation.run_episodes` on the same evaluation samples and ``reset`` seeds, with
the same backend. The evaluation samples are the run's held-out samples, or, with
``--eval-dataset`` another than ``--train-dataset`` (held-out real data), every sample of the
evaluation dataset whose content is not a training sample:

========================  ============================  ===============================================
condition                 locations                     labels / initial prompts
========================  ============================  ===============================================
``alignsam``              the agent (deterministic)     SRM / SRM (the full method)
``w/o RL``                random patches                SRM / SRM (paper: "w/o RL", random actions)
``w/o SRM``               the agent                     all positive / none (paper: "w/o SRM")
``random w/o SRM``        random patches                all positive / none
``single step``           the agent, first click only   SRM / SRM (paper: "w/o multi-step interaction")
``alignsam, GT init``     the agent (deterministic)     SRM / ground-truth pair (privileged, see below)
``w/o RL, GT init``       random patches                SRM / ground-truth pair (privileged)
``state only (eq. 4)``    an agent that reads only      SRM / SRM (``--ablate-inputs`` when the runs read
                          ``state`` (deterministic)     more than the state: a second agent per seed,
                                                        trained with ``inputs=("state",)``)
``all inputs``            an agent that reads every     SRM / SRM (``--ablate-inputs`` when the runs read
                          observation key               the state alone, the default: a second agent per
                                                        seed, trained with ``inputs=ALL_INPUTS``)
========================  ============================  ===============================================

Metrics: foreground-hit rate (fraction of clicks on ground-truth foreground), mean IoU after the
last click (15), after the first, and after the initial prompts alone (the SRM's pair: before any
click of the policy), SRM label accuracy (fraction of clicks whose label equals the ground truth at
the point: on the agent's clicks in ``alignsam``, on random clicks in ``w/o RL``). Each is averaged
over the held-out episodes of one training seed, then reported as mean +/- std over the training
seeds. ``w/o SRM`` reuses the agent trained with the SRM (not retrained without it) and ``single
step`` reads the first click of the 15-click episodes: both deviations from the paper are stated in
the table. The two ``GT init`` conditions are not in the paper: they start from one random
ground-truth positive and one negative point (the training episodes' start, or a user's first clicks
in interactive segmentation), which separates the quality of the clicks from the SRM's choice of the
target; they read the ground truth and are reported as such. Each condition also reports how often
the SRM's positive initial prompt is on the target and the final mIoU of those episodes and of the
others. The random policy draws from the env's ``np_random``, so its episodes are reproducible from
the seeds.

Usage::

    python -m agents.alignsam.experiments --dataset synthetic-shapes --dataset-n 114 \\
        --seeds 0 1 2 --timesteps 8000 --out runs/alignsam-exp
    # held-out real data: train on 50 random Berkeley images, evaluate on SOD (and the reverse)
    python -m agents.alignsam.experiments --train-dataset ../shared/data/Berkeley \\
        --eval-dataset ../shared/data/SOD --seeds 0 1 2 --ablate-inputs --out runs/alignsam-exp/berkeley-sod

The same command runs unchanged with ``--backend sam_vit_b --checkpoint PATH``. With the default
``classical`` backend the segmenter is a weight-free graph cut, NOT SAM; the report says so.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sam_gym import reporting

__all__ = ["CONDITIONS", "evaluate_run", "main", "summarize"]

#: Training steps per seed without ``--timesteps`` (``--preset paper`` keeps the paper's own budget).
DEFAULT_TIMESTEPS = 8000

#: Condition name -> what it is, for the table.
CONDITIONS: dict[str, str] = {
    "alignsam": "AlignSAM: agent + SRM labels + SRM initial prompts",
    "w/o RL": "random patches + SRM labels + SRM initial prompts",
    "w/o SRM": "agent, all clicks positive, no initial prompt (same agent, not retrained)",
    "random w/o SRM": "random patches, all clicks positive, no initial prompt",
    "single step": "agent + SRM, IoU and hit rate of the first click only (T = 1)",
    "alignsam, GT init": "agent + SRM labels, initial pair from the ground truth (privileged: target given)",
    "w/o RL, GT init": "random patches + SRM labels, initial pair from the ground truth (privileged)",
    "state only (eq. 4)": "agent trained on the eq. 4 state alone + its SRM labels and initial prompts",
    "all inputs": "agent trained on every observation key (state, mask, clicks, clicked) + its SRM labels and "
                  "initial prompts",
}


#: Key of the SRM's own held-out map accuracy in :func:`evaluate_run`'s result (not a click condition).
SRM_MAP = "srm map"


def _init_on_target(record: Any, dataset: Any) -> bool:
    """Whether the positive initial prompt ``(x, y)`` is on the ground truth (pixel ``[floor(y), floor(x)]``)."""
    target = dataset[record.index].target
    for (x, y), label in zip(record.init_points, record.init_labels, strict=True):
        if label == 1:
            row = min(max(int(np.floor(y)), 0), target.shape[0] - 1)
            col = min(max(int(np.floor(x)), 0), target.shape[1] - 1)
            return bool(target[row, col])
    return False


def _metrics(records: Sequence[Any], dataset: Any, first_only: bool = False) -> dict[str, float]:
    """Per-condition means over episodes.

    With initial prompts, also the fraction of episodes whose positive initial prompt is on the
    ground truth (``init_on_target``) and the final mIoU of those episodes and of the others
    (``miou_final_good_init`` / ``miou_final_bad_init``; 0 when a group is empty).
    """
    if first_only:
        hits = [float(r.on_target[0]) for r in records]
        label_ok = [float(r.labels[0] == int(r.on_target[0])) for r in records]
        final = [r.ious[0] for r in records]
    else:
        hits = [float(h) for r in records for h in r.on_target]
        label_ok = [float(lab == int(h)) for r in records for lab, h in zip(r.labels, r.on_target, strict=True)]
        final = [r.ious[-1] for r in records]
    return {
        "hit_rate": float(np.mean(hits)),
        "miou_final": float(np.mean(final)),
        "miou_first": float(np.mean([r.ious[0] for r in records])),
        "miou_init": float(np.mean([r.init_iou for r in records])),
        "label_accuracy": float(np.mean(label_ok)),
        "episodes": float(len(records)),
        **_init_split(records, final, dataset),
    }


def _init_split(records: Sequence[Any], final: Sequence[float], dataset: Any) -> dict[str, float]:
    """``init_on_target`` and the final mIoU split by it (empty without initial prompts)."""
    if not any(r.init_labels for r in records):
        return {}
    good = np.array([_init_on_target(r, dataset) for r in records])
    final_arr = np.asarray(final, dtype=float)
    return {"init_on_target": float(good.mean()),
            "miou_final_good_init": float(final_arr[good].mean()) if good.any() else 0.0,
            "miou_final_bad_init": float(final_arr[~good].mean()) if (~good).any() else 0.0}


def evaluate_run(run_dir: str | Path, indices: Sequence[int], eval_seeds: Sequence[int],
                 dataset: Any, cache: Any) -> dict[str, dict[str, float]]:
    """Evaluate one trained run under every condition on the held-out ``indices``.

    Args:
        run_dir: A run folder from :func:`agents.alignsam.training.train`.
        indices: Held-out dataset indices (the same for every condition).
        eval_seeds: ``reset`` seeds; each index runs once per seed.
        dataset: The full dataset (training split included; only ``indices`` are used).
        cache: The shared embedding cache (its backend must be the training one).

    Returns:
        Condition name -> metrics.
    """
    from agents.alignsam.policy import AlignSAMPolicy
    from agents.simple import RandomPolicy
    from sam_gym.envs import SamPromptEnv
    from sam_gym.evaluation import run_episodes

    agent = AlignSAMPolicy.load(run_dir)
    if agent.srm is None:
        raise ValueError(f"Expected a run trained with an SRM (implicit or explicit) for the ablations, got srm='none' "
                         f"in {run_dir}")
    config = agent.run_info["config"]
    no_srm_agent = AlignSAMPolicy(agent.model, None, agent.run_info, agent.run_dir)

    def env_for(env_kwargs: dict[str, Any]) -> SamPromptEnv:
        return SamPromptEnv(dataset=dataset, cache=cache, grid=tuple(config["grid"]), max_clicks=config["max_clicks"],
                            **env_kwargs)

    with_srm = agent.env_kwargs
    without = no_srm_agent.env_kwargs
    runs = {
        "alignsam": run_episodes(agent, env_for(with_srm), indices, eval_seeds),
        "w/o RL": run_episodes(RandomPolicy(), env_for(with_srm), indices, eval_seeds),
        "w/o SRM": run_episodes(no_srm_agent, env_for(without), indices, eval_seeds),
        "random w/o SRM": run_episodes(RandomPolicy(), env_for(without), indices, eval_seeds),
        "alignsam, GT init": run_episodes(agent.with_env_kwargs(init_prompts="gt_pair"),
                                          env_for({**with_srm, "init_prompts": "gt_pair"}), indices, eval_seeds),
        "w/o RL, GT init": run_episodes(RandomPolicy(), env_for({**with_srm, "init_prompts": "gt_pair"}), indices,
                                        eval_seeds),
    }
    results = {name: _metrics(records, dataset) for name, records in runs.items()}
    results["single step"] = _metrics(runs["alignsam"], dataset, first_only=True)
    measure_env = env_for({"action_mode": "patch", "label_mode": "oracle", "init_prompts": "gt_pair",
                           "info_iou": "none"})
    results[SRM_MAP] = agent.srm.map_metrics(agent.srm.collect(measure_env, indices, 1, 8, seed=int(eval_seeds[0])))
    return results


def evaluate_agent(run_dir: str | Path, indices: Sequence[int], eval_seeds: Sequence[int],
                   dataset: Any, cache: Any) -> dict[str, float]:
    """The ``alignsam`` condition alone (the agent with its SRM's labels and initial prompts), for ablation runs."""
    from agents.alignsam.policy import AlignSAMPolicy
    from sam_gym.envs import SamPromptEnv
    from sam_gym.evaluation import run_episodes

    agent = AlignSAMPolicy.load(run_dir)
    config = agent.run_info["config"]
    env = SamPromptEnv(dataset=dataset, cache=cache, grid=tuple(config["grid"]), max_clicks=config["max_clicks"],
                       **agent.env_kwargs)
    return _metrics(run_episodes(agent, env, indices, eval_seeds), dataset)


def evaluation_indices(run_dir: str | Path, dataset: Any, same_dataset: bool) -> list[int]:
    """The samples to evaluate a run on: its held-out split, or those of another dataset that it did not train on.

    Args:
        run_dir: The run folder.
        dataset: The evaluation dataset.
        same_dataset: Whether ``dataset`` is the training dataset (then the run's split decides).
    """
    from agents.alignsam.run_format import held_out_indices, read_run_info, train_sample_hashes
    from sam_gym.data.hashing import sample_hash

    info = read_run_info(run_dir)
    if same_dataset:
        return held_out_indices(info)
    trained = train_sample_hashes(info) or frozenset()
    return [i for i in range(len(dataset)) if sample_hash(dataset[i]) not in trained]


def summarize(per_seed: dict[int, dict[str, dict[str, float]]]) -> dict[str, dict[str, tuple[float, ...]]]:
    """Condition -> metric -> ``(mean, std, low, high)`` over training seeds.

    ``std`` is the population std (0 for one seed); ``[low, high]`` is the 95 % percentile bootstrap
    interval of the mean over the training seeds (:func:`sam_gym.stats.bootstrap_ci`, 10 000
    resamples, seed 0; zero width for one seed, coarse for a few).
    """
    from sam_gym.stats import bootstrap_ci

    conditions = next(iter(per_seed.values())).keys()
    out: dict[str, dict[str, tuple[float, ...]]] = {}
    for cond in conditions:
        metrics = next(iter(per_seed.values()))[cond].keys()
        out[cond] = {}
        for m in metrics:
            values = [r[cond][m] for r in per_seed.values()]
            ci = bootstrap_ci(values)
            out[cond][m] = (float(np.mean(values)), float(np.std(values)), ci.low, ci.high)
    return out


def markdown_table(summary: dict[str, dict[str, tuple[float, ...]]], n_seeds: int) -> str:
    """The results as a Markdown table (mean +/- std [95 % bootstrap interval] over ``n_seeds`` training seeds)."""
    columns = ["condition", "fg-hit rate", "mIoU after last click", "mIoU after click 1", "mIoU after initial prompts",
               "label accuracy", "init on target", "mIoU last, init on target", "mIoU last, init off target", "what"]
    rows = [[cond, *(f"{metrics[m][0]:.3f} ± {metrics[m][1]:.3f} [{metrics[m][2]:.3f}, {metrics[m][3]:.3f}]"
                     if m in metrics else "–"
                     for m in ("hit_rate", "miou_final", "miou_first", "miou_init", "label_accuracy", "init_on_target",
                               "miou_final_good_init", "miou_final_bad_init")), CONDITIONS[cond]]
            for cond, metrics in summary.items() if cond in CONDITIONS]
    lines = [reporting.markdown_table(rows, columns),
             f"\nmean ± std [95% percentile bootstrap interval of the mean, 10000 resamples] over {n_seeds} training "
             "seed(s); with few seeds the interval is coarse"]
    if SRM_MAP in summary:
        srm = summary[SRM_MAP]
        lines.append("\nSRM map on the held-out images (states of one episode per image: ground-truth initial pair, "
                     "8 clicks half on the foreground, oracle labels; cells thresholded at 0.5): " + ", ".join(
                         f"{m.replace('_', ' ')} {srm[m][0]:.3f} ± {srm[m][1]:.3f}"
                         for m in ("balanced_accuracy", "fg_accuracy", "bg_accuracy", "accuracy")))
    return "\n".join(lines)


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m agents.alignsam.experiments", description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", default="synthetic-shapes",
                        help="dataset name or folder, to train on and evaluate on its held-out samples")
    parser.add_argument("--train-dataset", default=None, help="train on this dataset instead (default: --dataset)")
    parser.add_argument("--eval-dataset", default=None,
                        help="evaluate on this dataset (its samples that are not training samples; default: the "
                             "held-out samples of the training dataset)")
    parser.add_argument("--dataset-n", type=int, default=None,
                        help="number of synthetic scenes of the training and evaluation datasets (synthetic only)")
    parser.add_argument("--backend", default="classical", help="classical (NOT SAM) | sam_vit_b | ...")
    parser.add_argument("--checkpoint", default=None, help="SAM weights path (SAM backends)")
    parser.add_argument("--srm", choices=("implicit", "explicit"), default="implicit", help="SRM branch")
    parser.add_argument("--text", default="", help="text prompt of the explicit SRM")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="training seeds")
    parser.add_argument("--eval-seeds", type=int, nargs="+", default=[0], help="reset seeds of the evaluation")
    parser.add_argument("--timesteps", type=int, default=None,
                        help="training steps per seed (default: 8000; --preset paper: the paper's E = 50 episodes)")
    parser.add_argument("--n-train", type=int, default=50, help="training samples (the rest is held out)")
    parser.add_argument("--max-eval", type=int, default=None, help="evaluate on the first N held-out samples only")
    parser.add_argument("--n-steps", type=int, default=None,
                        help="rollout steps per env (default: TrainConfig's 375 x 2 envs; --preset paper: one "
                             "15-click episode x 1 env)")
    parser.add_argument("--n-epochs", type=int, default=None, help="PPO epochs (default: the paper's 20)")
    parser.add_argument("--srm-warmup-steps", type=int, default=None,
                        help="supervised SRM warm-up steps before PPO (default: TrainConfig's; 0: paper, online only)")
    parser.add_argument("--no-srm-context", action="store_true",
                        help="the paper's SRM input, without the four context channels")
    parser.add_argument("--ent-coef", type=float, default=None, help="PPO entropy bonus (default: TrainConfig's)")
    parser.add_argument("--preset", choices=("paper",), default=None,
                        help="TrainConfig.preset (paper: Algorithm 1's schedule, eq. 4 state, the paper's SRM); the "
                             "options above override it")
    parser.add_argument("--train-labels", choices=("oracle", "srm"), default=None,
                        help="labels of the training clicks: oracle (the paper's) or the online SRM's "
                             "(as at evaluation)")
    parser.add_argument("--separate-extractors", action="store_true",
                        help="actor and critic each get their own features extractor (the paper's separate networks)")
    parser.add_argument("--ablate-inputs", action="store_true",
                        help="also train, per seed, an agent with the other inputs: every observation key "
                             "(condition 'all inputs') when the runs read the eq. 4 state alone (the default), "
                             "else the state alone (condition 'state only (eq. 4)')")
    parser.add_argument("--out", required=True, help="folder of the runs and of results.json / results.md")
    return parser.parse_args(argv)


def _train_config(args: argparse.Namespace, train_dataset: str, dataset_kwargs: dict[str, Any], seed: int,
                  run_dir: Path, **fields: Any) -> Any:
    """The run's TrainConfig: the preset (if any), then the options given, then ``fields``."""
    from agents.alignsam.config import TrainConfig

    given: dict[str, Any] = {k: v for k, v in (("n_steps", args.n_steps), ("n_epochs", args.n_epochs),
                                               ("srm_warmup_steps", args.srm_warmup_steps),
                                               ("ent_coef", args.ent_coef), ("train_labels", args.train_labels))
                             if v is not None}
    if args.no_srm_context:
        given["srm_context"] = False
    if args.separate_extractors:
        given["share_features_extractor"] = False
    given.update(dataset=train_dataset, dataset_kwargs=dataset_kwargs, backend=args.backend,
                 checkpoint=args.checkpoint, srm=args.srm, text=args.text, n_train=args.n_train,
                 seed=seed, out=str(run_dir), progress_bar=False, **fields)
    if args.timesteps is not None:
        given["timesteps"] = args.timesteps
    elif not args.preset:
        given["timesteps"] = DEFAULT_TIMESTEPS
    if args.n_steps:
        n_envs = 1 if args.preset == "paper" else TrainConfig.n_envs
        given.setdefault("batch_size", min(TrainConfig.batch_size, args.n_steps * n_envs))
    return TrainConfig.preset(args.preset, **given) if args.preset else TrainConfig(**given)


def main(argv: Sequence[str] | None = None) -> int:
    """Train (or reuse) one run per seed, evaluate every condition, write and print the table."""
    from agents.alignsam.config import ALL_INPUTS, TrainConfig
    from agents.alignsam.run_format import read_run_info
    from agents.alignsam.training import train_or_reuse
    from sam_gym.atomic import atomic_write_bytes
    from sam_gym.backends import make_backend
    from sam_gym.cache import EmbeddingCache
    from sam_gym.data import make_dataset

    args = _parse(argv)
    threads = TrainConfig().torch_threads
    if threads is not None:
        import torch

        # As in training: small networks on a shared 2-core machine run several times faster on one
        # thread (an evaluation-only re-run of complete runs was ~5x slower with torch's default).
        torch.set_num_threads(threads)
    out = Path(args.out)
    dataset_kwargs = {"n": args.dataset_n} if args.dataset_n is not None else {}
    train_name = args.train_dataset or args.dataset
    eval_name = args.eval_dataset or train_name
    same_dataset = eval_name == train_name
    dataset = make_dataset(eval_name, **dataset_kwargs)
    cache = EmbeddingCache(make_backend(args.backend, checkpoint=args.checkpoint), max_items=max(64, len(dataset)))
    per_seed: dict[int, dict[str, dict[str, float]]] = {}
    timings: dict[int, dict[str, float]] = {}
    held_out: list[int] = []
    for seed in args.seeds:
        run_dir = out / f"seed{seed}"
        start = time.perf_counter()
        train_or_reuse(_train_config(args, train_name, dataset_kwargs, seed, run_dir))
        info = read_run_info(run_dir)
        train_s = time.perf_counter() - start
        indices = evaluation_indices(run_dir, dataset, same_dataset)[: args.max_eval]
        if not indices:
            raise ValueError(f"Expected samples to evaluate on, got none: {train_name} was trained on whole "
                             f"(--n-train {args.n_train}); pass --eval-dataset or a smaller --n-train")
        if held_out and indices != held_out:
            raise ValueError(f"Expected every training seed to hold out the same samples, got {indices[:5]}... "
                             f"and {held_out[:5]}... (run folders of another split in {out}?)")
        held_out = indices
        start = time.perf_counter()
        per_seed[seed] = evaluate_run(run_dir, held_out, args.eval_seeds, dataset, cache)
        if args.ablate_inputs:
            state_only = tuple(info["config"]["inputs"]) == ("state",)
            inputs, name, condition = ((ALL_INPUTS, "all-inputs", "all inputs") if state_only
                                       else (("state",), "state-only", "state only (eq. 4)"))
            other_dir = out / f"seed{seed}-{name}"
            train_or_reuse(_train_config(args, train_name, dataset_kwargs, seed, other_dir, inputs=inputs))
            per_seed[seed][condition] = evaluate_agent(other_dir, held_out, args.eval_seeds, dataset, cache)
        timings[seed] = {"train_s": round(train_s, 1), "eval_s": round(time.perf_counter() - start, 1),
                         "train_steps_per_s": info.get("steps_per_second", 0.0)}
        print(f"seed {seed}: trained in {train_s:.0f} s, evaluated in {timings[seed]['eval_s']:.0f} s")
    summary = summarize(per_seed)
    backend = cache.backend.description
    config = read_run_info(out / f"seed{args.seeds[0]}")["config"]
    where = (f"held out: {len(held_out)} samples" if same_dataset
             else f"evaluated on {dataset.name}: {len(held_out)} samples")
    header = (f"AlignSAM trained on {config['n_train']} samples of {train_name} ({config['train_split']} split), "
              f"{where} x {len(args.eval_seeds)} eval seed(s), backend: {backend}, {config['timesteps']} training "
              f"steps, srm={args.srm}, inputs={'+'.join(config['inputs'])}, train labels {config['train_labels']}"
              + (f", preset {args.preset}" if args.preset else ""))
    table = header + "\n\n" + markdown_table(summary, len(args.seeds))
    results = {"args": vars(args), "backend": backend, "train_dataset": train_name, "dataset": dataset.name,
               "held_out": held_out, "per_seed": per_seed, "summary": summary, "timings": timings}
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out / "results.json", json.dumps(results, indent=2).encode())
    atomic_write_bytes(out / "results.md", (table + "\n").encode())
    print(table)
    return 0


def cli(argv: Sequence[str] | None = None) -> int:
    """``python -m agents.alignsam.experiments``: :func:`main`, with errors a user can fix as one line.

    A bad argument, a run folder made with other settings or a missing dataset prints one line and
    returns 2; Ctrl-C / SIGTERM during training saves the checkpoint (see
    :class:`~agents.alignsam.training.TrainingInterrupted`), prints one line and returns 130 / 143, and
    the same command continues.
    """
    from agents.alignsam.training import TrainingInterrupted

    prog = "python -m agents.alignsam.experiments"
    try:
        return main(argv)
    except TrainingInterrupted as exc:
        print(f"{prog}: {exc} (run the same command to continue)", file=sys.stderr)
        return exc.exit_status
    except (ValueError, FileNotFoundError) as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(cli())
