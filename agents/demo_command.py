"""``sam-gym demo``: train a small AlignSAM agent, then score it against the baselines on held-out images.

The project's main job, offline on a fresh machine: on built-in synthetic scenes (114 samples; by
default ``synthetic-multi``, where the target is every red shape of the image, two or three of them, so
one good click is not enough, see :mod:`sam_gym.data.synthetic`),
train AlignSAM (sb3-contrib ``MaskablePPO`` + the implicit recalibration module, see
:mod:`agents.alignsam.training`) on the first ``--n-train`` samples, then evaluate it and the
baselines on the 64 held-out samples (same episodes for every policy, one shared backend), all on
the agent's footing: the location-only baselines (``random``, ``grid``) click with the agent's SRM
labels and initial prompts (:func:`sam_gym.protocol.apply_protocol`; ``random`` is then the paper's
"w/o RL" row), and the rows that read ground truth (the ``clicker`` oracle) are marked, then write
``results.json``, ``results.md`` and ``iou_vs_clicks.png`` to ``--out``. The default backend is the
weight-free classical segmenter, which is NOT SAM, and every output says so; ``--backend sam_vit_b
--checkpoint PATH`` runs the same on real SAM. Points are ``(x, y)`` image pixels; masks ``(H, W)``
indexed ``[row, col]``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from sam_gym.commands.common import add_backend_arguments, backend_from_args, canonical_command, check_out
from sam_gym.commands.eval import EvalSettings, build_policies, evaluate

HELP = "train a small AlignSAM agent on synthetic shapes and compare it with the baselines (offline)"

#: The demo's default built-in dataset (:mod:`sam_gym.data.synthetic`), the other choice, and their
#: size: 50 training samples leave 64 held-out ones (the held-out set of ``docs/alignsam.md``).
DATASET = "synthetic-multi"
CHOICES = ("synthetic-shapes", "synthetic-multi")
DATASET_N = 114
#: ``--quick`` (tests, seconds): training and evaluation sizes.
QUICK = {"n_train": 2, "timesteps": 8, "n_steps": 8, "batch_size": 8, "n_epochs": 1, "n_envs": 1,
         "max_clicks": 4, "srm_warmup_steps": 5, "episodes": 1}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the command's arguments."""
    add_backend_arguments(parser)
    parser.add_argument("--dataset", choices=CHOICES, default=DATASET,
                        help=f"built-in dataset, {DATASET_N} samples (default: %(default)s)")
    parser.add_argument("--policies", default="random,grid,clicker",
                        help="comma-separated baselines scored beside the trained agent (default: %(default)s)")
    parser.add_argument("--n-train", type=int, default=50,
                        help=f"training samples; the rest of the {DATASET_N} synthetic samples is held out "
                             "(default: %(default)s)")
    parser.add_argument("--timesteps", type=int, default=8000,
                        help="PPO training clicks (default: %(default)s, about 11 PPO updates; the whole demo takes "
                             "about 5.5 minutes on 2 idle CPU cores)")
    parser.add_argument("--max-clicks", type=int, default=15, help="clicks per episode (default: %(default)s)")
    parser.add_argument("--seeds", default="0", help="evaluation reset seeds (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="training seed (default: %(default)s)")
    parser.add_argument("--save-episodes", type=int, default=2, metavar="K",
                        help="episode strips per policy in OUT/episodes/ (default: %(default)s)")
    parser.add_argument("--out", default="runs/demo", help="output folder (default: %(default)s)")
    parser.add_argument("--quick", action="store_true", help="a seconds-long smoke run (tests): tiny training and "
                                                             "evaluation, numbers meaningless")


#: Options that ``--quick`` overrides (with :data:`QUICK`, seeds ``0`` and no strips): the quick
#: run's command line leaves them out, since they do not change what it runs.
QUICK_IGNORES = ("n_train", "timesteps", "max_clicks", "seeds", "save_episodes")


def _command_line(args: argparse.Namespace) -> str:
    """The command line that reproduces this run (with ``--quick``, without the options it overrides)."""
    return canonical_command("sam-gym demo", add_arguments, args, skip=QUICK_IGNORES if args.quick else ())


def _train_config(args: argparse.Namespace, run_dir: Path) -> Any:
    from agents.alignsam.config import TrainConfig

    sizes: dict[str, Any] = {"n_train": args.n_train, "timesteps": args.timesteps, "max_clicks": args.max_clicks}
    if args.quick:
        sizes = {k: v for k, v in QUICK.items() if k != "episodes"}
    return TrainConfig(dataset=args.dataset, dataset_kwargs={"n": DATASET_N}, backend=args.backend,
                       checkpoint=args.checkpoint, half=args.half, seed=args.seed,
                       out=str(run_dir), srm="implicit", train_split="first", device=args.device or "auto",
                       progress_bar=True,
                       extra={"command": _command_line(args)}, **sizes)


def run(args: argparse.Namespace) -> int:
    """Train, evaluate, print the table and say which backend produced it."""
    check_out(args.out)
    from sam_gym.commands.eval import parse_seeds
    from sam_gym.data import make_dataset

    start = time.perf_counter()
    seeds = [0] if args.quick else parse_seeds(args.seeds)
    specs = [s.strip() for s in args.policies.split(",") if s.strip()]
    if any(spec.partition(":")[0] == "alignsam" for spec in specs):
        raise ValueError("Expected baselines in --policies, got 'alignsam' (the demo trains and adds it itself)")
    baselines = build_policies(specs)
    out = Path(args.out)
    run_dir = out / "alignsam"
    config = _train_config(args, run_dir)
    dataset = make_dataset(args.dataset, n=DATASET_N)
    if not 0 < config.n_train < len(dataset):
        raise ValueError(f"Expected --n-train in [1, {len(dataset) - 1}] (the demo data has {len(dataset)} samples), "
                         f"got {config.n_train}")
    backend = backend_from_args(args)
    banner = f"sam-gym demo: backend {backend.description}" + ("" if backend.is_sam else "  [NOT SAM]")
    print(f"{banner}\n{'=' * len(banner)}")

    print(f"1/2 training AlignSAM on samples 0-{config.n_train - 1} of {args.dataset} ({config.timesteps} clicks)")
    from agents.alignsam.policy import AlignSAMPolicy
    from agents.alignsam.training import TrainingInterrupted, train_or_reuse

    try:
        trained, reused = train_or_reuse(config)
    except TrainingInterrupted as exc:
        print(f"sam-gym demo: {exc} (run the same demo command to continue)", file=sys.stderr)
        return exc.exit_status
    if reused:
        print(f"reusing the trained agent in {trained} (delete the folder to train again)")
    train_seconds = time.perf_counter() - start
    agent = AlignSAMPolicy.load(trained, device=args.device or "auto")
    # Every location-only baseline clicks with the agent's SRM labels and initial prompts (random: the
    # paper's "w/o RL"), so that the rows compare click locations; the others (the clicker oracle)
    # keep their own env options and the report marks those that read ground truth.
    from sam_gym.holdout import select_held_out
    from sam_gym.protocol import ProtocolPolicy, apply_protocol

    policies = apply_protocol({"alignsam": agent, **baselines}, agent, "alignsam")
    # The samples after the training ones, checked by content against the run's training samples.
    held_out = select_held_out(policies, dataset, range(config.n_train, len(dataset)),
                               limit=QUICK["episodes"] if args.quick else None)
    indices = held_out.indices
    wrapped = [name for name, policy in policies.items() if isinstance(policy, ProtocolPolicy)]
    print(f"2/2 evaluating {', '.join(policies)} on held-out samples {indices[0]}-{indices[-1]}, seeds {seeds}"
          + (f"; {', '.join(wrapped)} with the agent's SRM labels and initial prompts" if wrapped else ""))
    settings = EvalSettings(max_clicks=config.max_clicks, indices=indices, seeds=seeds, grid=config.grid,
                            save_episodes=0 if args.quick else args.save_episodes, command=_command_line(args),
                            held_out=held_out)
    results = evaluate(policies, dataset, backend, settings, out)
    from sam_gym.reporting import results_markdown

    total = time.perf_counter() - start
    print(results_markdown(results))
    print(f"agent: {trained}\nresults: {out / 'results.md'}, {out / 'results.json'}, {out / 'iou_vs_clicks.png'}")
    print(f"wall time: {total:.0f} s (training {train_seconds:.0f} s)\n{banner}")
    return 0
