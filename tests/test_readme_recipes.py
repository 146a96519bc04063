"""The README's "Use it with plain SB3 and other libraries" recipes run as written.

Every fenced block under that heading runs, in order, in one temporary working folder (a later
block may read what an earlier one saved, as a reader following the section would): a ``python``
block in a fresh namespace, each ``sam-gym ...`` line of a ``bash`` block through
:func:`sam_gym.cli.main`. The budgets are the tiny ones written in the snippets.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("sb3_contrib")

README = Path(__file__).resolve().parents[1] / "README.md"
HEADING = "## Use it with plain SB3 and other libraries"


def _blocks() -> list[tuple[str, str]]:
    """``(language, code)`` of each fenced block of the section."""
    text = README.read_text(encoding="utf-8")
    start = text.index(HEADING) + len(HEADING)
    end = text.find("\n## ", start)
    section = text[start:] if end < 0 else text[start:end]
    return re.findall(r"^```(\w+)\n(.*?)^```$", section, flags=re.MULTILINE | re.DOTALL)


def test_section_covers_the_recipes() -> None:
    blocks = _blocks()
    code = "\n".join(body for _, body in blocks)
    languages = [lang for lang, _ in blocks]
    assert languages.count("python") >= 4 and languages.count("bash") == 1
    for needle in ('MaskablePPO("MultiInputPolicy"', 'gym.make("SamPrompt-v0")', "AlignSAMExtractor",
                   "state_shape", "gym.make_vec", "make_sb3_vec_env", "VecMonitor", "evaluate_policy",
                   "MaskableEvalCallback", "sam-gym eval --policy sb3_contrib.ppo_mask:MaskablePPO.load@"):
        assert needle in code, needle


def test_every_recipe_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from sam_gym.cli import main

    monkeypatch.chdir(tmp_path)
    for number, (lang, body) in enumerate(_blocks(), start=1):
        if lang == "python":
            exec(compile(body, f"README {HEADING!r} block {number}", "exec"), {"__name__": "__readme__"})  # noqa: S102
        elif lang == "bash":
            for line in body.splitlines():
                if line.strip():
                    command = shlex.split(line)
                    assert command[0] == "sam-gym", line
                    assert main(command[1:]) == 0, line
        else:
            raise AssertionError(f"block {number}: unexpected language {lang!r}")
    assert (tmp_path / "runs" / "ppo_eval" / "results.json").is_file()
    assert (tmp_path / "eval_logs" / "evaluations.npz").is_file()
