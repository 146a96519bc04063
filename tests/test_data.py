import numpy as np
import pytest
from PIL import Image

from sam_gym.data import FolderDataset, SyntheticShapes, make_dataset
from sam_gym.data.subset import Subset, split


def _write(folder, name, array, mode=None):
    folder.mkdir(parents=True, exist_ok=True)
    img = Image.fromarray(array, mode) if mode else Image.fromarray(array)
    img.save(folder / name)


def _pair(root, stem, h=40, w=50, mask_values=None, ext=".png"):
    image = np.random.default_rng(0).integers(0, 255, (h, w, 3), dtype=np.uint8)
    _write(root / "images", stem + ext, image)
    mask = np.zeros((h, w), np.uint8) if mask_values is None else mask_values
    if mask_values is None:
        mask[10:20, 10:30] = 255
    _write(root / "masks", stem + ".png", mask)


def test_synthetic_is_seeded_and_valid():
    a, b = SyntheticShapes(n=5, seed=3), SyntheticShapes(n=5, seed=3)
    for i in range(5):
        sa, sb = a[i], b[i]
        assert np.array_equal(sa.image, sb.image) and np.array_equal(sa.target, sb.target)
        assert sa.image.dtype == np.uint8 and sa.target.dtype == bool and sa.target.any() and not sa.target.all()
    assert not np.array_equal(SyntheticShapes(n=1, seed=4)[0].image, a[0].image)
    with pytest.raises(IndexError):
        a[5]


def test_folder_binary_with_void_and_jpg(tmp_path):
    mask = np.zeros((40, 50), np.uint8)
    mask[10:20, 10:30] = 255
    mask[9, 10:30] = 128
    _pair(tmp_path, "a", mask_values=mask, ext=".jpg")
    ds = FolderDataset(tmp_path, void_values=(128,))
    s = ds[0]
    assert s.image_id == "a" and s.target.sum() == 200 and s.void.sum() == 20
    assert not (s.void & s.target).any()


def test_folder_instances_palette(tmp_path):
    idx = np.zeros((40, 50), np.uint8)
    idx[0:10, 0:10] = 1
    idx[20:30, 20:30] = 2
    idx[35:, :] = 255
    img = Image.fromarray(idx, "P")
    img.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0] + [0] * (3 * 253))
    (tmp_path / "masks").mkdir()
    img.save(tmp_path / "masks" / "x.png")
    _write(tmp_path / "images", "x.png", np.zeros((40, 50, 3), np.uint8))
    ds = FolderDataset(tmp_path, mode="instances", void_values=(255,))
    assert len(ds) == 2
    assert [ds[i].instance_id for i in range(2)] == [1, 2]
    assert ds[1].key == "x#2" and ds[1].target.sum() == 100 and ds[1].void.sum() == 250


def test_folder_errors_are_clear(tmp_path):
    with pytest.raises(ValueError, match="is not a directory"):
        FolderDataset(tmp_path / "nope")
    (tmp_path / "images").mkdir()
    with pytest.raises(ValueError, match="masks .*missing"):
        FolderDataset(tmp_path)
    _pair(tmp_path, "ok")
    _write(tmp_path / "images", "lonely.png", np.zeros((40, 50, 3), np.uint8))
    with pytest.raises(ValueError, match="no mask for lonely.png"):
        FolderDataset(tmp_path)
    with pytest.warns(UserWarning, match="skipped 1"):
        ds = FolderDataset(tmp_path, on_error="skip")
    assert len(ds) == 1


def test_folder_size_mismatch_empty_and_unreadable(tmp_path):
    _pair(tmp_path, "ok")
    _write(tmp_path / "images", "big.png", np.zeros((60, 50, 3), np.uint8))
    _write(tmp_path / "masks", "big.png", np.zeros((40, 50), np.uint8))
    with pytest.raises(ValueError, match="size mismatch: big.png"):
        FolderDataset(tmp_path)
    (tmp_path / "images" / "big.png").unlink()
    (tmp_path / "masks" / "big.png").unlink()
    _write(tmp_path / "images", "empty.png", np.zeros((40, 50, 3), np.uint8))
    _write(tmp_path / "masks", "empty.png", np.zeros((40, 50), np.uint8))
    with pytest.raises(ValueError, match="empty.png has no foreground"):
        FolderDataset(tmp_path)
    (tmp_path / "masks" / "empty.png").write_bytes(b"")
    with pytest.raises(ValueError, match="empty file"):
        FolderDataset(tmp_path)
    (tmp_path / "masks" / "empty.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match="Could not read"):
        FolderDataset(tmp_path)


def test_synthetic_multi_target_is_every_red_shape():
    ds = make_dataset("synthetic-multi", n=30)
    assert ds.name == "synthetic-multi" and len(ds) == 30
    for i in range(30):
        sample = ds[i]
        image = sample.image.astype(int)
        red = (image[..., 0] > 130) & (image[..., 0] - np.maximum(image[..., 1], image[..., 2]) > 60)
        # every target pixel is red (up to the per-pixel noise at the threshold); distractors are not red
        # (gradients can push a few background pixels across this threshold: not a colour-threshold task)
        assert (red & sample.target).sum() >= 0.99 * sample.target.sum()
    # two or three red shapes: most images have more than one connected target region
    from scipy import ndimage

    regions = [ndimage.label(ds[i].target)[1] for i in range(30)]
    assert max(regions) <= 3 and sum(r >= 2 for r in regions) >= 15


def test_synthetic_arguments_are_checked():
    with pytest.raises(ValueError, match="targets"):
        SyntheticShapes(targets=(0, 2))
    with pytest.raises(ValueError, match="target_radius"):
        SyntheticShapes(target_radius=(0.3, 0.1))


def test_make_dataset_errors():
    with pytest.raises(ValueError, match="synthetic-shapes"):
        make_dataset("no-such-dataset")
    with pytest.raises(ValueError, match="image_dir"):
        make_dataset("ann.json")


def test_subset_and_split():
    ds = SyntheticShapes(n=6)
    train, test = split(ds, 4)
    assert len(train) == 4 and len(test) == 2
    assert np.array_equal(test[0].image, ds[4].image)
    with pytest.raises(ValueError, match="indices in"):
        Subset(ds, [7])


@pytest.mark.shared_data
def test_shared_presets(shared_data):
    grab = make_dataset(shared_data / "GrabCut")
    assert len(grab) == 50
    assert sum(grab[i].void.any() for i in range(10)) > 0  # the 128 band is void
    voc = make_dataset(shared_data / "VOC-instances")
    s = voc[0]
    assert s.instance_id is not None and s.class_id is not None and 1 <= s.class_id <= 20
    kvasir = make_dataset(shared_data / "Kvasir-SEG")  # lossy JPEG masks, thresholded
    assert 0.01 < kvasir[0].target.mean() < 0.9


def test_coco_dataset(tmp_path):
    pytest.importorskip("pycocotools")
    import json

    _write(tmp_path / "img", "a.png", np.zeros((30, 40, 3), np.uint8))
    ann = {"images": [{"id": 1, "file_name": "a.png", "height": 30, "width": 40}],
           "annotations": [{"id": 7, "image_id": 1, "category_id": 3, "iscrowd": 0, "area": 100.0,
                            "bbox": [5, 5, 10, 10], "segmentation": [[5, 5, 15, 5, 15, 15, 5, 15]]}],
           "categories": [{"id": 3, "name": "car"}]}
    (tmp_path / "ann.json").write_text(json.dumps(ann))
    ds = make_dataset(tmp_path / "ann.json", image_dir=tmp_path / "img")
    s = ds[0]
    assert len(ds) == 1 and s.class_id == 3 and s.instance_id == 7 and 80 <= s.target.sum() <= 130
    with pytest.raises(ValueError, match="missing from"):
        make_dataset(tmp_path / "ann.json", image_dir=tmp_path)


def _truncate(path, keep=0.5):
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


@pytest.mark.parametrize("ext", [".png", ".jpg"])
def test_truncated_image_is_found_at_construction(tmp_path, ext):
    _pair(tmp_path, "ok")
    _pair(tmp_path, "cut", h=120, w=160, mask_values=np.pad(np.full((60, 80), 255, np.uint8), ((30, 30), (40, 40))),
          ext=ext)
    _truncate(tmp_path / "images" / f"cut{ext}")
    with pytest.raises(ValueError, match=f"cut{ext}.*truncated"):
        FolderDataset(tmp_path)
    with pytest.warns(UserWarning, match="skipped 1") as record:
        ds = FolderDataset(tmp_path, on_error="skip")
    assert len(record) == 1 and len(ds) == 1 and ds[0].image_id == "ok"
    ((file, reason),) = ds.skipped
    assert file == str(tmp_path / "images" / f"cut{ext}") and "truncated" in reason


def test_all_foreground_mask_is_found_at_construction(tmp_path):
    _pair(tmp_path, "ok")
    _pair(tmp_path, "full", mask_values=np.full((40, 50), 255, np.uint8))
    with pytest.raises(ValueError, match="full.png covers the whole image"):
        FolderDataset(tmp_path)
    with pytest.warns(UserWarning, match="full.png covers the whole image"):
        ds = FolderDataset(tmp_path, on_error="skip")
    assert len(ds) == 1 and ds.skipped == [(str(tmp_path / "masks" / "full.png"),
                                             "full.png covers the whole image (no background pixel)")]
    # void pixels are not background: an object plus a void band around it covers the image too
    (tmp_path / "masks" / "full.png").unlink()
    mask = np.full((40, 50), 255, np.uint8)
    mask[:5] = 128
    _write(tmp_path / "masks", "full.png", mask)
    with pytest.raises(ValueError, match="covers the whole image"):
        FolderDataset(tmp_path, void_values=(128,))


def test_two_images_with_one_stem_are_an_error_naming_both(tmp_path):
    _pair(tmp_path, "a")
    _write(tmp_path / "images", "a.jpg", np.zeros((40, 50, 3), np.uint8))
    for on_error in ("raise", "skip"):
        with pytest.raises(ValueError, match=r"a\.jpg and a\.png"):
            FolderDataset(tmp_path, on_error=on_error)


def test_all_files_skipped_says_why(tmp_path):
    _pair(tmp_path, "full", mask_values=np.full((40, 50), 255, np.uint8))
    with pytest.warns(UserWarning), pytest.raises(ValueError, match="no usable .*covers the whole image"):
        FolderDataset(tmp_path, on_error="skip")


def test_decompression_bomb_is_a_clear_error_with_a_knob(tmp_path, monkeypatch):
    from PIL import Image

    from sam_gym.data.io import MAX_PIXELS_ENV, read_image

    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", Image.MAX_IMAGE_PIXELS)  # restored after the test
    _pair(tmp_path, "big")  # 40 x 50 = 2000 pixels
    monkeypatch.setenv(MAX_PIXELS_ENV, "500")  # Pillow refuses images over twice that: 1000 pixels
    with pytest.raises(ValueError, match=rf"at most 1,000 pixels .*MAX_IMAGE_PIXELS = 500.*{MAX_PIXELS_ENV}"):
        FolderDataset(tmp_path)
    with pytest.raises(ValueError, match=MAX_PIXELS_ENV):
        read_image(tmp_path / "images" / "big.png")
    monkeypatch.setenv(MAX_PIXELS_ENV, "1000")
    assert len(FolderDataset(tmp_path)) == 1
    monkeypatch.setenv(MAX_PIXELS_ENV, "lots")
    with pytest.raises(ValueError, match=f"Expected {MAX_PIXELS_ENV} to be a positive number"):
        read_image(tmp_path / "images" / "big.png")


def test_failed_image_opens_close_their_file(tmp_path):
    import gc
    import warnings

    from sam_gym.data.io import read_image, read_mask

    _pair(tmp_path, "cut", h=120, w=160)
    _truncate(tmp_path / "images" / "cut.png")
    _truncate(tmp_path / "masks" / "cut.png")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for read, folder in ((read_image, "images"), (read_mask, "masks")):
            with pytest.raises(ValueError, match="truncated"):
                read(tmp_path / folder / "cut.png")
        gc.collect()
    assert not [w for w in caught if issubclass(w.category, ResourceWarning)]


def test_folder_errors_name_a_folder_in_place_of_a_file(tmp_path):
    _pair(tmp_path, "ok")
    (tmp_path / "images" / "b.png").mkdir()
    _write(tmp_path / "masks", "b.png", np.zeros((40, 50), np.uint8))
    with pytest.raises(ValueError, match="b.png, but it is a folder"):
        FolderDataset(tmp_path)


def test_subset_forwards_sources_and_skipped(tmp_path):
    _pair(tmp_path, "a")
    _pair(tmp_path, "b")
    _write(tmp_path / "images", "lonely.png", np.zeros((40, 50, 3), np.uint8))
    with pytest.warns(UserWarning):
        ds = FolderDataset(tmp_path, on_error="skip")
    sub = Subset(ds, [1])
    assert sub.source(0) == str(tmp_path / "images" / "b.png")
    assert sub.skipped == ds.skipped and ds.skipped[0][0].endswith("lonely.png")


def _coco(tmp_path, **changes):
    import json

    _write(tmp_path / "img", "a.png", np.zeros((30, 40, 3), np.uint8))
    ann = {"images": [{"id": 1, "file_name": "a.png", "height": 30, "width": 40}],
           "annotations": [{"id": 7, "image_id": 1, "category_id": 3, "iscrowd": 0, "area": 100.0,
                            "bbox": [5, 5, 10, 10], "segmentation": [[5, 5, 15, 5, 15, 15, 5, 15]]}],
           "categories": [{"id": 3, "name": "car"}]}
    for key, value in changes.items():
        if key in ann["annotations"][0]:
            ann["annotations"][0][key] = value
        else:
            ann = value
    (tmp_path / "ann.json").write_text(json.dumps(ann))
    return tmp_path / "ann.json"


@pytest.mark.parametrize(("changes", "message"), [
    ({"top": [1, 2]}, "top-level list"),
    ({"top": {"images": []}}, "list 'annotations'.*got none"),
    ({"image_id": 99}, "annotation 7: image_id 99 is not in 'images'"),
    ({"segmentation": "abc"}, "annotation 7: expected a segmentation as a list of polygons or an RLE dict"),
    ({"segmentation": [[1, 2, 3, 4]]}, "at least 3 points"),
    ({"segmentation": {"size": [10, 10], "counts": [100]}}, r"RLE of size \[30, 40\]"),
    ({"segmentation": {"size": [30, 40], "counts": [5, 6]}}, "summing to 1200"),
    ({"category_id": None}, "integer 'id', 'image_id', 'category_id'"),
])
def test_malformed_coco_files_are_clear_errors(tmp_path, changes, message):
    pytest.importorskip("pycocotools")
    from sam_gym.data.coco import CocoDataset

    with pytest.raises(ValueError, match=message):
        CocoDataset(_coco(tmp_path, **changes), tmp_path / "img")


def test_coco_skips_bad_annotations_and_checks_image_sizes(tmp_path):
    pytest.importorskip("pycocotools")
    import json

    from sam_gym.data.coco import CocoDataset

    path = _coco(tmp_path)
    data = json.loads(path.read_text())
    data["annotations"].append({**data["annotations"][0], "id": 8, "segmentation": "abc"})
    path.write_text(json.dumps(data))
    with pytest.warns(UserWarning, match="skipped 1 annotation") as record:
        ds = CocoDataset(path, tmp_path / "img", on_error="skip")
    assert len(record) == 1 and len(ds) == 1 and ds[0].instance_id == 7
    assert ds.skipped == [(str(tmp_path / "img" / "a.png"), "annotation 8: expected a segmentation as a list of "
                           "polygons or an RLE dict, got 'abc'")]
    assert ds.source(0) == str(tmp_path / "img" / "a.png")
    data["images"][0]["height"] = 31
    data["annotations"].pop()
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=r"the image is \(30, 40\) \(H, W\) but 'images' says \(31, 40\)"):
        CocoDataset(path, tmp_path / "img")
