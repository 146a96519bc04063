"""A SAM checkpoint that cannot serve is one CLI line with exit status 2, never a traceback from torch.load."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("segment_anything")

from sam_gym.cli import main  # noqa: E402


class _Payload:
    """Unpickling this would run code: a checkpoint must never do that."""

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return print, ("PAYLOAD RAN",)


def _corrupt(path: Path) -> None:
    path.write_bytes(b"\x00\x01not a checkpoint\xff" * 64)


def _truncated(path: Path) -> None:
    torch.save({"image_encoder.weight": torch.zeros(4096)}, path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _pickled_payload(path: Path) -> None:
    path.write_bytes(pickle.dumps({"image_encoder.weight": _Payload()}, protocol=2))


def _not_sam(path: Path) -> None:
    torch.save({"fc.weight": torch.zeros(2, 2)}, path)


def _other_sam(path: Path) -> None:  # a (tiny) SAM's weights for ViT-B: the model has to be built to tell
    from sam_gym.testing import tiny_sam

    torch.save(tiny_sam().state_dict(), path)


@pytest.mark.parametrize(("make", "message"), [
    (_corrupt, "could not read it"),
    (_truncated, "could not read it"),
    (_pickled_payload, "pickles objects other than tensors"),
    (_not_sam, "do not fit the model: no key starts with image_encoder."),
    (_other_sam, "do not fit the model"),
])
def test_bad_checkpoint_is_one_line_with_status_2(make, message, tmp_path, capsys) -> None:
    path = tmp_path / "weights.pth"
    make(path)
    argv = ["eval", "--policy", "random", "--dataset", "synthetic-shapes", "--samples", "1", "--backend",
            "sam_vit_b", "--checkpoint", str(path), "--device", "cpu", "--out", str(tmp_path / "out")]
    assert main(argv) == 2
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert err.count("\n") == 0 and message in err and str(path) in err and "Traceback" not in err
    assert "PAYLOAD RAN" not in captured.out + captured.err
