r"""``sam-gym train``: train an AlignSAM agent (MaskablePPO + Semantic Recalibration Module).

Example::

    sam-gym train --dataset synthetic-shapes --backend classical --srm implicit \\
        --timesteps 20000 --seed 0 --out runs/alignsam-s0
    sam-gym train --preset paper --dataset ../shared/data/SOD --out runs/alignsam-paper   # Algorithm 1's schedule
    sam-gym train --out runs/alignsam-s0 --timesteps 40000 --resume   # continue a (killed) run

The run folder holds ``config.json``, the last checkpoint (``checkpoint-N/``: model and SRM weights,
written as one unit every ``--checkpoint-every`` steps and on Ctrl-C / SIGTERM) and ``tb/``;
evaluate it as the policy ``alignsam:DIR``. With ``--backend classical`` (the offline default) the segmenter is a
weight-free graph cut, not SAM; say so wherever its results are reported. An option left out takes
the value of ``--preset`` (``agents.alignsam.config.PRESETS``) or, without one, ``TrainConfig``'s default.
"""

from __future__ import annotations

import argparse
import sys

from sam_gym.commands.common import check_out

HELP = "train an AlignSAM agent (MaskablePPO + SRM) on --n-train samples of a dataset"

#: Options whose value goes into the TrainConfig field of the same name (dashes for underscores).
_FIELDS = ("dataset", "backend", "checkpoint", "srm", "text", "clip_model", "clip_pretrained", "timesteps", "seed",
           "n_train", "train_split", "split_seed", "n_envs", "n_steps", "batch_size", "n_epochs", "gae_lambda",
           "q_updates", "srm_warmup_steps", "srm_context", "max_clicks", "device", "checkpoint_every", "inputs",
           "train_labels", "share_features_extractor")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the training arguments (defaults: ``TrainConfig``'s, or the ``--preset``'s)."""
    from agents.alignsam.config import ALL_INPUTS, PRESETS, SRM_MODES, TrainConfig

    d = TrainConfig()

    def default(name: str) -> str:
        return f"(default: {getattr(d, name)!r}; --preset paper: {TrainConfig.preset('paper').to_dict()[name]!r})"

    parser.add_argument("--preset", choices=sorted(PRESETS), default=None,
                        help="a named setting: 'paper' is Algorithm 1's schedule (1 env, one 15-click episode per "
                             "PPO update, 50 episodes, GAE lambda 1), the eq. 4 state only, separate actor and "
                             "critic, the paper's SRM (no context channels, no warm-up); options given override it")
    parser.add_argument("--dataset", help="'synthetic-shapes', 'synthetic-multi' or a folder with images/ and masks/ "
                                          f"(default: {d.dataset})")
    parser.add_argument("--backend",
                        help="classical (weight-free, NOT SAM) | sam_vit_h | sam_vit_l | sam_vit_b | mobilesam_vit_t "
                             f"(default: {d.backend})")
    parser.add_argument("--checkpoint", help="SAM weights: a path, 'auto' or 'random' (tests only)")
    parser.add_argument("--half", action="store_true",
                        help="bf16 SAM on a GPU, as eval --half: evaluate the agent with the same precision")
    parser.add_argument("--srm", choices=SRM_MODES,
                        help="recalibration module: implicit | explicit (CLIP-Surgery text map) | none (ablation) "
                             f"(default: {d.srm})")
    parser.add_argument("--text", help="text prompt of the explicit SRM, e.g. 'a photo of a cat'")
    parser.add_argument("--clip-model", help=f"open_clip architecture of the explicit SRM (default: {d.clip_model})")
    parser.add_argument("--clip-pretrained",
                        help="open_clip pretrained tag (needs internet once) or a local checkpoint path "
                             f"(default: {d.clip_pretrained})")
    parser.add_argument("--timesteps", type=int, help=f"total env steps {default('timesteps')}")
    parser.add_argument("--seed", type=int, help=f"seed of everything but the split (default: {d.seed})")
    parser.add_argument("--out", required=True, help="run folder")
    parser.add_argument("--n-train", type=int,
                        help=f"training samples, the rest is held out; all of a dataset of that size (default: "
                             f"{d.n_train})")
    parser.add_argument("--train-split", choices=("random", "first"),
                        help=f"which samples train: a seeded random subset (the paper's) or the first ones "
                             f"(default: {d.train_split})")
    parser.add_argument("--split-seed", type=int, help=f"seed of the random training subset (default: {d.split_seed})")
    parser.add_argument("--n-envs", type=int, help=f"envs sharing one backend {default('n_envs')}")
    parser.add_argument("--n-steps", type=int, help=f"rollout steps per env {default('n_steps')}")
    parser.add_argument("--batch-size", type=int, help=f"PPO minibatch {default('batch_size')}")
    parser.add_argument("--n-epochs", type=int, help=f"PPO epochs per update (default: {d.n_epochs})")
    parser.add_argument("--gae-lambda", type=float,
                        help=f"GAE lambda; 1 is the paper's eq. 6-7 {default('gae_lambda')}")
    parser.add_argument("--q-updates", type=int, help="SRM steps per action (default: 1 implicit, 5 explicit)")
    parser.add_argument("--srm-warmup-steps", type=int,
                        help=f"supervised SRM steps on the training split before PPO; 0: the paper's online-only "
                             f"SRM {default('srm_warmup_steps')}")
    parser.add_argument("--no-srm-context", dest="srm_context", action="store_const", const=False, default=None,
                        help="the paper's SRM input, without the four context channels")
    parser.add_argument("--inputs", nargs="+", choices=ALL_INPUTS,
                        help=f"observation keys the agent reads, 'state' among them (eq. 4: state) {default('inputs')}")
    parser.add_argument("--train-labels", choices=("oracle", "srm"),
                        help=f"labels of the training clicks: ground truth (the paper's) or the online SRM's, as at "
                             f"evaluation (default: {d.train_labels})")
    parser.add_argument("--separate-extractors", dest="share_features_extractor", action="store_const", const=False,
                        default=None, help="actor and critic each get their own features extractor (the paper's "
                                           "separate networks; default: shared)")
    parser.add_argument("--max-clicks", type=int, help=f"clicks per episode (default: {d.max_clicks})")
    parser.add_argument("--device", help=f"torch device (default: {d.device})")
    parser.add_argument("--checkpoint-every", type=int, metavar="STEPS",
                        help=f"steps between checkpoints; Ctrl-C and SIGTERM also save one "
                             f"(default: {d.checkpoint_every})")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out up to --timesteps")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def config_from_args(args: argparse.Namespace) -> object:
    """The :class:`~agents.alignsam.config.TrainConfig` of the parsed arguments (preset, then the options given)."""
    from agents.alignsam.config import TrainConfig

    given = {name: getattr(args, name) for name in _FIELDS if getattr(args, name, None) is not None}
    if given.get("inputs") is not None:
        given["inputs"] = tuple(given["inputs"])
    given.update(half=args.half, out=args.out, progress_bar=not args.no_progress)
    return TrainConfig.preset(args.preset, **given) if args.preset else TrainConfig(**given)


def run(args: argparse.Namespace) -> int:
    """Build the :class:`~agents.alignsam.config.TrainConfig` from ``args`` and train."""
    check_out(args.out)
    from agents.alignsam.training import TrainingInterrupted, train

    config = config_from_args(args)
    try:
        run_dir = train(config, resume=args.resume)  # type: ignore[arg-type]
    except TrainingInterrupted as exc:
        print(f"sam-gym train: {exc}", file=sys.stderr)
        return exc.exit_status
    print(f"Trained AlignSAM run: {run_dir} (evaluate it as the policy 'alignsam:{run_dir}')")
    return 0
