"""Write your own prompting policy and score it with the same code as the baselines.

Usage::

    python examples/custom_policy.py           # 16 synthetic images, 8 clicks
    python examples/custom_policy.py --tiny    # seconds (used by the tests)

A policy subclasses :class:`sam_gym.policy.PromptPolicy` and implements ``act(observation,
deterministic)``; SB3's ``predict`` signature comes with it, so :func:`sam_gym.evaluation.run_episodes`
scores it exactly like a trained agent. ``env_kwargs`` declares the env options it needs;
``oracle = True`` says that it reads the ground truth. Tables mark (``†``) every row whose episodes
read the ground truth: this policy reads none, but in the default env its clicks get oracle labels
and a ground-truth initial pair, so its row is marked; ``sam-gym eval --protocol alignsam:RUN_DIR``
runs it with an AlignSAM run's SRM labels and initial prompts instead.

The policy below uses only the observation: it clicks the not-yet-clicked patch nearest to the
centre of mass of the current mask (the ``mask`` observation, the segmenter's previous mask
probability over the image frame), i.e. it keeps clicking on what the segmenter already finds.
Patch ``a`` is ``(row, col) = (a // cols, a % cols)``, clicked at its centre ``(x, y)`` in image
pixels (x right, y down); the label comes from the env's ``label_mode``.

Another way to use a policy of your own, without code: put the class in an importable module and
run ``sam-gym eval --policy my_package.my_module:MaskCentrePolicy --dataset ...``.
"""

from __future__ import annotations

import argparse
from typing import Any, ClassVar

import numpy as np

from sam_gym.backends import make_backend
from sam_gym.cache import EmbeddingCache
from sam_gym.data import SyntheticShapes
from sam_gym.evaluation import compare_policies
from sam_gym.policies import make_policy
from sam_gym.policy import PromptPolicy
from sam_gym.reporting import build_results, results_markdown


class MaskCentrePolicy(PromptPolicy):
    """Click the unclicked patch nearest to the centre of mass of the current mask (image centre if empty)."""

    name: ClassVar[str] = "mask-centre"
    oracle: ClassVar[bool] = False
    env_kwargs: ClassVar[dict[str, Any]] = {"action_mode": "patch"}

    def act(self, observation: dict[str, np.ndarray], deterministic: bool) -> int:
        """Return the patch index to click (see the module docstring)."""
        rows, cols = self.env.rows, self.env.cols
        mask = observation["mask"][0].astype(np.float64) / 255.0  # (m, m) over the whole image frame
        m = mask.shape[0]
        if mask.sum() > 0:
            r, c = np.indices(mask.shape)
            centre = np.array([(r * mask).sum(), (c * mask).sum()]) / mask.sum() / m  # (row, col) in [0, 1)
        else:
            centre = np.array([0.5, 0.5])
        cell_r, cell_c = np.divmod(np.arange(rows * cols), cols)
        distance = np.hypot((cell_r + 0.5) / rows - centre[0], (cell_c + 0.5) / cols - centre[1])
        distance[np.asarray(observation["clicked"]) > 0.5] = np.inf
        return int(np.argmin(distance))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="3 images, 3 clicks: runs in seconds")
    args = parser.parse_args()
    n, max_clicks = (3, 3) if args.tiny else (16, 8)

    dataset = SyntheticShapes(n=n)
    backend = make_backend("classical")  # weight-free, NOT SAM: fine to compare policies offline
    policies = {"mask-centre (custom)": MaskCentrePolicy(), "random": make_policy("random"),
                "grid": make_policy("grid")}
    runs = compare_policies(policies, dataset, EmbeddingCache(backend), max_clicks=max_clicks,
                            indices=range(n), seeds=[0, 1])
    results = build_results(runs, backend=backend, dataset=dataset.name, max_clicks=max_clicks,
                            command=f"python examples/custom_policy.py{' --tiny' if args.tiny else ''}")
    print(results_markdown(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
