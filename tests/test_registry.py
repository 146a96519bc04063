"""One registry entry type and one lookup for backends, policies, commands and datasets."""

from __future__ import annotations

import pytest

from sam_gym.backends import BACKENDS, backend_entry, make_backend
from sam_gym.cli import COMMANDS, main
from sam_gym.data import DATASETS, make_dataset
from sam_gym.data.scenes import MultiInstanceScenes
from sam_gym.policies import POLICIES, make_policy
from sam_gym.registry import Entry, lookup

TABLES = {"backend": BACKENDS, "policy": POLICIES, "command": COMMANDS, "dataset": DATASETS}


def test_lookup_lists_the_names_and_suggests_a_close_one() -> None:
    table = {"random": Entry("agents.simple:RandomPolicy", "uniform"), "grid": Entry("agents.simple:GridPolicy")}
    assert lookup(table, "grid", kind="policy") is table["grid"]
    assert lookup(table, "g", kind="policy", aliases={"g": "grid"}) is table["grid"]
    with pytest.raises(ValueError, match=r"^Expected policy to be one of \['random', 'grid'\], got 'randm'\. "
                                         r"Did you mean 'random'\?$"):
        lookup(table, "randm", kind="policy")
    with pytest.raises(ValueError, match=r"got 'zzz'\.$"):
        lookup(table, "zzz", kind="policy")
    with pytest.raises(ValueError, match="Expected arg to be"):
        Entry("m:x", arg="sometimes")  # type: ignore[arg-type]


@pytest.mark.parametrize(("kind", "name"), [(k, n) for k, t in TABLES.items() for n in t])
def test_every_entry_resolves(kind, name) -> None:
    entry = TABLES[kind][name]
    assert isinstance(entry, Entry)
    target = entry.resolve()
    if kind == "command":
        assert all(hasattr(target, a) for a in ("HELP", "add_arguments", "run"))
    else:
        assert callable(target) and entry.help


def test_only_the_weight_free_backend_refuses_a_checkpoint() -> None:
    assert [n for n, e in BACKENDS.items() if not e.checkpoint] == ["classical", "null"]  # null: a measuring stub
    assert backend_entry("vit_b") is BACKENDS["sam_vit_b"]
    assert make_backend("classical", checkpoint=None, device=None, half=False).name == "classical"
    with pytest.raises(ValueError, match=r"^Expected no checkpoint, device or half with backend 'classical' "
                                         r"\(it has no weights\), got checkpoint='w\.pth'$"):
        make_backend("classical", checkpoint="w.pth")
    with pytest.raises(ValueError, match="Did you mean 'classical'"):
        make_backend("clasical")


def test_policy_arguments_are_passed_only_where_taken() -> None:
    with pytest.raises(ValueError, match=r"^Expected no argument for the 'random' policy, got 'random:foo'$"):
        make_policy("random:foo")
    with pytest.raises(ValueError, match=r"^Expected an argument for the 'alignsam' policy \(.*alignsam:RUN_DIR\)"):
        make_policy("alignsam")
    assert make_policy("grid:3").points_per_side == 3 and make_policy("grid").points_per_side is None


@pytest.mark.parametrize(("policy", "message"), [
    ("alignsam", "Expected an argument for the 'alignsam' policy"),
    ("random:foo", "Expected no argument for the 'random' policy"),
])
def test_policy_argument_errors_are_one_cli_line(policy, message, capsys, tmp_path) -> None:
    assert main(["eval", "--policy", policy, "--dataset", "synthetic-shapes", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and message in err


def test_datasets_by_name() -> None:
    scenes = make_dataset("multi-instance-scenes", n=2, seed=3)
    assert isinstance(scenes, MultiInstanceScenes) and scenes.seed == 3 and len(scenes) >= 4
    with pytest.raises(ValueError, match=r"got 'synthetic-shape' \(no such directory\)\. "
                                         r"Did you mean 'synthetic-shapes'\?"):
        make_dataset("synthetic-shape")


def test_unknown_command_gets_a_close_match(capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["trian", "--out", "x"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "invalid choice" in err and "Did you mean 'train'?" in err
