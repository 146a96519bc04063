"""The package boundary: ``sam_gym`` is a library that never imports ``agents`` (nor torch, until asked)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import sam_gym

PACKAGE = Path(sam_gym.__file__).resolve().parent


def _imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def test_sam_gym_never_imports_agents() -> None:
    offenders = {str(path.relative_to(PACKAGE.parent)): sorted(m for m in _imported_modules(path)
                                                               if m.split(".")[0] == "agents")
                 for path in sorted(PACKAGE.rglob("*.py"))}
    assert {k: v for k, v in offenders.items() if v} == {}


def test_import_and_an_episode_step_load_neither_agents_nor_torch() -> None:
    code = (
        "import sys\n"
        "import gymnasium as gym\n"
        "import sam_gym\n"
        "env = gym.make('SamPrompt-v0')\n"
        "env.reset(seed=0)\n"
        "env.step(env.action_space.sample())\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'agents', 'torch'}))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                            cwd=PACKAGE.parent)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]"
