"""Every error a user can fix is one line on stderr and exit status 2, found before any work starts."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sam_gym.cli import main


def _one_line_error(capsys: pytest.CaptureFixture[str], argv: list[str], *messages: str) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"sam-gym {argv[0]}: error:") and "\n" not in err, err
    for message in messages:
        assert message in err, err
    return err


@pytest.fixture
def no_work(monkeypatch: pytest.MonkeyPatch) -> None:
    """Building the (classical) backend or a synthetic dataset fails the test: the error must come first."""
    from sam_gym.backends.classical import ClassicalBackend
    from sam_gym.data import SyntheticShapes

    def work(*args: object, **kwargs: object) -> None:
        raise AssertionError("work started before the --out check")

    # class attributes are looked up at each call, so the patch cannot outlive the test
    monkeypatch.setattr(ClassicalBackend, "__init__", work)
    monkeypatch.setattr(SyntheticShapes, "__init__", work)


def _folder(root: Path, n: int = 1) -> Path:
    rng = np.random.default_rng(0)
    for folder in ("images", "masks"):
        (root / folder).mkdir(parents=True)
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (40, 50, 3), dtype=np.uint8)).save(root / "images" / f"{i}.png")
        mask = np.zeros((40, 50), np.uint8)
        mask[10:20, 10:30] = 255
        Image.fromarray(mask).save(root / "masks" / f"{i}.png")
    return root


#: Each command that takes --out, with the least it needs besides --out.
OUT_COMMANDS = {
    "eval": ["eval", "--policy", "random", "--dataset", "synthetic-shapes"],
    "bench": ["bench"],
    "train-aop": ["train-aop"],
    "train-sapnet": ["train-sapnet"],
    "train": ["train"],
    "demo": ["demo", "--quick"],
}


@pytest.mark.parametrize("command", sorted(OUT_COMMANDS))
def test_out_is_an_existing_file_or_folder(tmp_path, capsys, no_work, command) -> None:
    taken = tmp_path / "taken"
    if command == "bench":  # bench writes one JSON file: a folder there is the mistake
        taken.mkdir()
        message = "Expected --out to be a file to write, got the folder"
    else:
        taken.write_text("not a folder")
        message = "Expected --out to be a folder, got the existing file"
    _one_line_error(capsys, [*OUT_COMMANDS[command], "--out", str(taken)], message, str(taken))
    below_a_file = tmp_path / "file.txt"
    below_a_file.write_text("")
    _one_line_error(capsys, [*OUT_COMMANDS[command], "--out", str(below_a_file / "sub" / "out.json")],
                    "inside a folder", str(below_a_file))


@pytest.mark.skipif(sys.platform != "linux", reason="uses /proc as a folder that accepts no new file")
@pytest.mark.parametrize("command", sorted(OUT_COMMANDS))
def test_out_in_an_unwritable_folder(capsys, no_work, command) -> None:
    _one_line_error(capsys, [*OUT_COMMANDS[command], "--out", "/proc/sam-gym-out/x.json"],
                    "in a writable folder, but /proc is not writable")


def test_decompression_bomb_names_the_limit_and_the_knob(tmp_path, capsys, monkeypatch) -> None:
    from sam_gym.data.io import MAX_PIXELS_ENV

    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", Image.MAX_IMAGE_PIXELS)  # restored after the test
    data = _folder(tmp_path / "big")  # 40 x 50 = 2000 pixels, over twice the limit below
    monkeypatch.setenv(MAX_PIXELS_ENV, "500")
    for argv in (["cache", "--dataset", str(data), "--cache-dir", str(tmp_path / "cache")],
                 ["eval", "--policy", "random", "--dataset", str(data), "--on-error", "raise",
                  "--out", str(tmp_path / "run")]):
        _one_line_error(capsys, argv, "at most 1,000 pixels", "MAX_IMAGE_PIXELS = 500", MAX_PIXELS_ENV, "0.png")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("command", ["eval", "cache", "bench"])
def test_void_with_synthetic_data(tmp_path, capsys, command) -> None:
    argv = {"eval": ["eval", "--policy", "random", "--out", str(tmp_path / "run")],
            "cache": ["cache", "--cache-dir", str(tmp_path / "cache")],
            "bench": ["bench", "--out", str(tmp_path / "b.json")]}[command]
    _one_line_error(capsys, [*argv, "--dataset", "synthetic-shapes", "--void", "128"],
                    "Expected --void only with a folder dataset", "synthetic-shapes")


def test_image_dir_needs_a_coco_file_and_a_coco_file_needs_it(tmp_path, capsys) -> None:
    out = ["--out", str(tmp_path / "run")]
    _one_line_error(capsys, ["eval", "--policy", "random", "--dataset", "synthetic-shapes", "--image-dir",
                             str(tmp_path), *out], "Expected --image-dir only with a COCO .json --dataset")
    _one_line_error(capsys, ["eval", "--policy", "random", "--dataset", str(tmp_path / "ann.json"), *out],
                    "Expected --image-dir DIR", "ann.json")
    _one_line_error(capsys, ["eval", "--policy", "random", "--dataset", "no-such-set", "--void", "1", *out],
                    "no such directory")  # an unknown name is reported as such, not as a --void problem


GOOD_COCO = {"images": [{"id": 1, "file_name": "0.png", "height": 40, "width": 50}],
             "annotations": [{"id": 7, "image_id": 1, "category_id": 3, "iscrowd": 0, "area": 200.0,
                              "segmentation": [[10, 10, 30, 10, 30, 20, 10, 20]]}]}


@pytest.mark.parametrize(("coco", "message"), [
    ([GOOD_COCO], "top-level list"),
    ({"images": GOOD_COCO["images"]}, "a list 'annotations'"),
    ({**GOOD_COCO, "annotations": [{**GOOD_COCO["annotations"][0], "image_id": 99}]},
     "image_id 99 is not in 'images'"),
    ({**GOOD_COCO, "annotations": [{**GOOD_COCO["annotations"][0], "segmentation": "abc"}]},
     "expected a segmentation as a list of polygons or an RLE dict, got 'abc'"),
])
@pytest.mark.parametrize("command", ["eval", "cache"])
def test_malformed_coco_files(tmp_path, capsys, coco, message, command) -> None:
    pytest.importorskip("pycocotools")
    images = _folder(tmp_path / "coco") / "images"
    ann = tmp_path / "ann.json"
    ann.write_text(json.dumps(coco))
    argv = {"eval": ["eval", "--policy", "random", "--out", str(tmp_path / "run")],
            "cache": ["cache", "--cache-dir", str(tmp_path / "cache")]}[command]
    _one_line_error(capsys, [*argv, "--dataset", str(ann), "--image-dir", str(images)], message, str(ann))
