r"""``sam-gym train``: train an AlignSAM agent (MaskablePPO + Semantic Recalibration Module).

Example::

    sam-gym train --dataset synthetic-shapes --backend classical --srm implicit \\
        --timesteps 20000 --seed 0 --out runs/alignsam-s0
    sam-gym train --out runs/alignsam-s0 --timesteps 40000 --resume   # continue a (killed) run

The run folder holds ``config.json``, the last checkpoint (``checkpoint-N/``: model and SRM weights,
written as one unit every ``--checkpoint-every`` steps and on Ctrl-C / SIGTERM) and ``tb/``;
evaluate it as the policy ``alignsam:DIR``. With ``--backend classical`` (the offline default) the segmenter is a
weight-free graph cut, not SAM; say so wherever its results are reported.
"""

from __future__ import annotations

import argparse
import sys

from sam_gym.commands.common import check_out

HELP = "train an AlignSAM agent (MaskablePPO + SRM) on the first --n-train samples of a dataset"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the training arguments (defaults: the paper's settings, see ``agents.alignsam.config``)."""
    from agents.alignsam.config import SRM_MODES, TrainConfig

    d = TrainConfig()
    parser.add_argument("--dataset", default=d.dataset,
                        help="'synthetic-shapes', 'synthetic-multi' or a folder with images/ and masks/")
    parser.add_argument("--backend", default=d.backend,
                        help="classical (weight-free, NOT SAM) | sam_vit_h | sam_vit_l | sam_vit_b | mobilesam_vit_t")
    parser.add_argument("--checkpoint", default=None, help="SAM weights: a path, 'auto' or 'random' (tests only)")
    parser.add_argument("--half", action="store_true",
                        help="bf16 SAM on a GPU, as eval --half: evaluate the agent with the same precision")
    parser.add_argument("--srm", choices=SRM_MODES, default=d.srm,
                        help="recalibration module: implicit | explicit (CLIP-Surgery text map) | none (ablation)")
    parser.add_argument("--text", default=d.text, help="text prompt of the explicit SRM, e.g. 'a photo of a cat'")
    parser.add_argument("--clip-model", default=d.clip_model, help="open_clip architecture of the explicit SRM")
    parser.add_argument("--clip-pretrained", default=d.clip_pretrained,
                        help="open_clip pretrained tag (needs internet once) or a local checkpoint path")
    parser.add_argument("--timesteps", type=int, default=d.timesteps, help="total env steps (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=d.seed, help="seed of everything (default: %(default)s)")
    parser.add_argument("--out", required=True, help="run folder")
    parser.add_argument("--n-train", type=int, default=d.n_train,
                        help="train on the first N samples, the rest is held out (default: %(default)s)")
    parser.add_argument("--n-envs", type=int, default=d.n_envs, help="envs sharing one backend (default: %(default)s)")
    parser.add_argument("--n-steps", type=int, default=d.n_steps, help="rollout steps per env (default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=d.batch_size, help="PPO minibatch (default: %(default)s)")
    parser.add_argument("--n-epochs", type=int, default=d.n_epochs, help="PPO epochs per update (default: %(default)s)")
    parser.add_argument("--q-updates", type=int, default=None,
                        help="SRM steps per action (default: 1 implicit, 5 explicit)")
    parser.add_argument("--srm-warmup-steps", type=int, default=d.srm_warmup_steps,
                        help="supervised SRM steps on the training split before PPO; 0: the paper's online-only "
                             "SRM (default: %(default)s)")
    parser.add_argument("--no-srm-context", action="store_true",
                        help="the paper's SRM input, without the four context channels")
    parser.add_argument("--max-clicks", type=int, default=d.max_clicks,
                        help="clicks per episode (default: %(default)s)")
    parser.add_argument("--device", default=d.device, help="torch device (default: %(default)s)")
    parser.add_argument("--checkpoint-every", type=int, default=d.checkpoint_every, metavar="STEPS",
                        help="steps between checkpoints; Ctrl-C and SIGTERM also save one (default: %(default)s)")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out up to --timesteps")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def run(args: argparse.Namespace) -> int:
    """Build the :class:`~agents.alignsam.config.TrainConfig` from ``args`` and train."""
    check_out(args.out)
    from agents.alignsam.config import TrainConfig
    from agents.alignsam.training import TrainingInterrupted, train

    config = TrainConfig(
        dataset=args.dataset, backend=args.backend, checkpoint=args.checkpoint, half=args.half, srm=args.srm,
        text=args.text,
        clip_model=args.clip_model, clip_pretrained=args.clip_pretrained, timesteps=args.timesteps, seed=args.seed,
        out=args.out, n_train=args.n_train, n_envs=args.n_envs, n_steps=args.n_steps, batch_size=args.batch_size,
        n_epochs=args.n_epochs, q_updates=args.q_updates, max_clicks=args.max_clicks, device=args.device,
        srm_warmup_steps=args.srm_warmup_steps, srm_context=not args.no_srm_context,
        checkpoint_every=args.checkpoint_every, progress_bar=not args.no_progress,
    )
    try:
        run_dir = train(config, resume=args.resume)
    except TrainingInterrupted as exc:
        print(f"sam-gym train: {exc}", file=sys.stderr)
        return exc.exit_status
    print(f"Trained AlignSAM run: {run_dir} (evaluate it as the policy 'alignsam:{run_dir}')")
    return 0
