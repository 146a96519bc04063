"""The ``sam-gym`` command line: ``--help`` of every command, and one-line errors with exit status 2."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from sam_gym.cli import COMMANDS, main


def test_top_level_help(capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert all(name in out for name in COMMANDS)


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_command_help(command, capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        main([command, "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: sam-gym {command}") and "--" in out


def test_unknown_command_exits_2(capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["evaluate-everything"])
    assert exc.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


def test_missing_required_argument_exits_2(capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["eval", "--dataset", "synthetic-shapes"])
    assert exc.value.code == 2
    assert "--policy" in capsys.readouterr().err


@pytest.mark.parametrize(("argv", "message"), [
    (["eval", "--policy", "no-such-policy", "--dataset", "synthetic-shapes"], "Expected policy to be one of"),
    (["eval", "--policy", "random", "--dataset", "missing/dataset/dir"], "missing/dataset/dir"),
    (["eval", "--policy", "not_a_module.x:Policy", "--dataset", "synthetic-shapes"], "Could not import"),
])
def test_user_errors_are_one_line_with_status_2(argv, message, capsys, tmp_path) -> None:
    assert main([*argv, "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and message in err and "Traceback" not in err


def test_console_script_installed() -> None:
    exe = shutil.which("sam-gym") or str(__import__("pathlib").Path(sys.executable).with_name("sam-gym"))
    result = subprocess.run([exe, "eval", "--policy", "nope", "--dataset", "synthetic-shapes"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [result.stderr.strip()] and "nope" in result.stderr
