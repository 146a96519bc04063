"""Class-aware SAPNet: negatives make the MIL instance scores rank proposals, PDG, supercategory labels, old models."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torchvision")

from agents.sapnet import (  # noqa: E402
    SAPNET_FILE,
    Bag,
    background_boxes,
    box_iou,
    fit,
    load_sapnet,
    part_boxes,
    save_sapnet,
)
from agents.sapnet.labels import label_source, supercategory, supercategory_scenes  # noqa: E402
from sam_gym.backends.base import Embedding, Prediction  # noqa: E402
from sam_gym.backends.classical import ClassicalBackend  # noqa: E402
from sam_gym.data.scenes import MultiInstanceScenes, Scene  # noqa: E402


class _Masks:
    """Picklable ``k -> mask`` of a stub prediction."""

    def __init__(self, masks: list[np.ndarray]) -> None:
        self.masks = masks

    def __call__(self, k: int) -> np.ndarray:
        return self.masks[k]


class PartWholeGroupBackend(ClassicalBackend):
    """Classical features; ``decode`` proposes SAM's three kinds: part, whole, group (of same-class instances).

    The part is the instance cut to a square of side 6 around the point; the group is the union of the
    point's instance and every other instance of its class. The group gets the highest predicted score,
    so the backend's top-1 is wrong whenever a class has two or more instances.
    """

    def __init__(self, scenes: list[Scene]) -> None:
        super().__init__()
        self.scenes = scenes

    def encode(self, image: np.ndarray) -> Embedding:
        embedding = super().encode(image)
        index = next(i for i, s in enumerate(self.scenes) if s.image is image or np.array_equal(s.image, image))
        return Embedding(embedding.features, embedding.image_size, {**embedding.extras, "scene": np.array([index])})

    def decode(self, embedding: Embedding, points: np.ndarray, labels: np.ndarray, mask_input: object = None,
               multimask: bool = False) -> Prediction:
        scene = self.scenes[int(embedding.extras["scene"][0])]
        x, y = np.asarray(points, dtype=np.float64)[0]
        row, col = int(y), int(x)
        hits = [k for k, m in enumerate(scene.masks) if m[row, col]]
        if not hits:
            empty = np.zeros(embedding.image_size, dtype=bool)
            empty[max(row - 2, 0):row + 3, max(col - 2, 0):col + 3] = True
            return Prediction(np.array([0.3, 0.2, 0.1]), None, _Masks([empty, empty, empty]))
        whole = scene.masks[hits[0]]
        part = np.zeros_like(whole)
        part[max(row - 3, 0):row + 3, max(col - 3, 0):col + 3] = True
        group = np.any([m for m, c in zip(scene.masks, scene.classes, strict=True)
                        if c == scene.classes[hits[0]]], axis=0)
        return Prediction(np.array([0.5, 0.7, 0.9]), None, _Masks([part & whole, whole, group]))


def _scenes(n: int, seed: int) -> list[Scene]:
    return MultiInstanceScenes(n=n, size=(64, 80), seed=seed, min_shapes=3, max_shapes=5).scenes()


def _instance_peak(model: object, backend: PartWholeGroupBackend, scenes: list[Scene]) -> tuple[float, float]:
    """Mean over instances of the largest instance score in the bag, and the share selecting the whole."""
    from agents.aop.predictor import object_points

    peaks, whole = [], []
    for scene in scenes:
        embedding = backend.encode(scene.image)
        points = object_points(scene.masks)
        classes = [str(c) for c in scene.classes]
        bags = model.bags(backend, embedding, points, classes)
        for bag, (score, instance), gt in zip(bags, model.scores(backend, embedding, bags, classes), scene.masks,
                                              strict=True):
            peaks.append(float(instance.max()))
            whole.append(bool(np.array_equal(bag.masks[int(np.argmax(score))], gt)))
    return float(np.mean(peaks)), float(np.mean(whole))


@pytest.fixture(scope="module")
def stub() -> tuple[PartWholeGroupBackend, list[Scene], list[Scene]]:
    train, test = _scenes(6, seed=3), _scenes(3, seed=50)
    return PartWholeGroupBackend(train + test), train, test


@pytest.fixture(scope="module")
def aware(stub: tuple) -> object:
    backend, train, _ = stub
    model, losses = fit(backend, train, epochs=20, seed=0, n_jitter=0)
    assert losses[-1] < 0.5 * losses[0]
    return model


def test_class_aware_mil_with_negatives_separates_proposals(stub: tuple, aware: object) -> None:
    backend, _, test = stub
    peak, whole = _instance_peak(aware, backend, test)
    assert peak > 0.55  # 3 proposals per bag: flat instance scores would peak at 1/3
    assert whole >= 0.8  # the top-1 (the group) is the whole only for a class with one instance


def test_single_mil_without_negatives_prefers_parts(stub: tuple, aware: object) -> None:
    backend, train, test = stub
    plain, _ = fit(backend, train, epochs=20, seed=0, n_jitter=0, n_background_boxes=0, n_part_boxes=0)
    assert _instance_peak(plain, backend, test)[1] < 0.5 < _instance_peak(aware, backend, test)[1]


def test_point_distance_guidance_changes_the_selection_as_defined(stub: tuple) -> None:
    backend, train, _ = stub
    model, _ = fit(backend, train[:2], epochs=2, seed=0, n_jitter=0)
    scene = train[0]
    embedding = backend.encode(scene.image)
    masks = [m for m in scene.masks[:2]]
    boxes = np.array([[0, 0, 10, 10], [0, 0, 20, 20]], dtype=np.float32)
    bag = Bag(point=(5.0, 5.0), masks=np.stack(masks), boxes=boxes, scores=np.zeros(2, np.float32),
              pdg=np.ones(2, dtype=np.float32))
    label = str(scene.classes[0])
    base, _ = model.scores(backend, embedding, [bag], [label])[0]
    bag.pdg = np.array([1.0, 0.25], dtype=np.float32)
    guided, instance = model.scores(backend, embedding, [bag], [label])[0]
    np.testing.assert_allclose(guided, base * bag.pdg, rtol=1e-5)
    assert instance.sum() == pytest.approx(1.0, abs=1e-5)
    bag.pdg = np.array([1.0, 0.0], dtype=np.float32)
    assert model.select(backend, embedding, [bag], [label]) == [0]
    bag.pdg = np.array([0.0, 1.0], dtype=np.float32)
    assert model.select(backend, embedding, [bag], [label]) == [1]


def test_negative_boxes_obey_the_iou_limits() -> None:
    rng = np.random.default_rng(0)
    positives = np.array([[10, 10, 40, 40], [50, 5, 70, 30]], dtype=np.float32)
    neg = background_boxes(rng, positives, (64, 80), 20)
    assert len(neg) == 20 and box_iou(neg, positives).max() < 0.3
    assert (neg[:, 0] >= 0).all() and (neg[:, 2] <= 80).all() and (neg[:, 3] <= 64).all()
    parts = part_boxes(rng, positives[0], 10)
    assert len(parts) == 10 and box_iou(parts, positives[:1]).max() < 0.5
    assert (parts[:, :2] >= 10).all() and (parts[:, 2:] <= 40).all()
    assert part_boxes(rng, positives[0], 0).shape == (0, 4)


def test_supercategory_labels() -> None:
    assert supercategory("baseball bat", "coco-names") == "sports"
    assert supercategory("15", "voc-ids") == "person"
    assert supercategory("20", "voc-ids") == "electronic"  # tvmonitor -> tv
    assert label_source("COCO_MVal") == "coco-names" and label_source("VOC-instances") == "voc-ids"
    with pytest.raises(ValueError, match="COCO category name"):
        supercategory("15", "coco-names")
    with pytest.raises(ValueError, match="VOC class id"):
        supercategory("cat", "voc-ids")
    with pytest.raises(ValueError, match="COCO_MVal"):
        label_source("GrabCut")
    scene = Scene(image=np.zeros((4, 4, 3), np.uint8), masks=[np.ones((4, 4), bool)] * 2, classes=["cat", "bus"])
    assert supercategory_scenes([scene], "coco-names")[0].classes == ["animal", "vehicle"]
    assert scene.classes == ["cat", "bus"]


def test_supercategory_fit_records_its_label_space(stub: tuple) -> None:
    backend, train, _ = stub
    scenes = [Scene(image=s.image, masks=s.masks, classes=["cat"] * len(s.masks), void=s.void) for s in train[:1]]
    model, _ = fit(backend, scenes, epochs=1, class_mode="supercategory", label_source="coco-names")
    assert model.config.classes == ("animal", "__background__") and model.config.label_space == "supercategory"
    with pytest.raises(ValueError, match="label_source"):
        fit(backend, scenes, epochs=1, class_mode="supercategory")


@pytest.mark.parametrize("mode", ["dataset", "agnostic"])
def test_a_model_saved_before_label_space_loads(stub: tuple, tmp_path: Path, mode: str) -> None:
    backend, train, _ = stub
    model, _ = fit(backend, train[:1], epochs=1, n_jitter=0, class_mode=mode)
    blob = torch.load(save_sapnet(model, tmp_path / "new"), weights_only=True)
    del blob["config"]["label_space"]  # what the class-agnostic-era trainer wrote
    (tmp_path / "old").mkdir()
    torch.save(blob, tmp_path / "old" / SAPNET_FILE)
    old = load_sapnet(tmp_path / "old")
    assert old.config.label_space == mode and old.config.classes == model.config.classes
    for key, value in model.head.state_dict().items():
        torch.testing.assert_close(old.head.state_dict()[key], value)


def test_policy_asks_about_the_target_class_in_the_model_label_space() -> None:
    from types import SimpleNamespace

    from agents.sapnet import BACKGROUND, SAPNet, SAPNetConfig, SAPNetPolicy
    from sam_gym.backends import make_backend
    from sam_gym.data.base import Sample

    backend = make_backend("classical")
    sample = Sample(image=np.zeros((4, 4, 3), np.uint8), target=np.ones((4, 4), bool), void=np.zeros((4, 4), bool),
                    image_id="baseball bat00_000000057232")
    voc = Sample(image=sample.image, target=sample.target, void=sample.void, image_id="2011_000003", class_id=15)
    for space, want in [("supercategory", ("sports", "person")), ("dataset", ("baseball bat", "15")),
                        ("agnostic", ("object", "object"))]:
        config = SAPNetConfig(classes=("x", BACKGROUND), embed_channels=int(backend.embedding_shape[0]),
                              backend_name="classical", backend_model_id=backend.model_id, label_space=space)
        policy = SAPNetPolicy(model=SAPNet(config))
        got = []
        for name, s in [("COCO_MVal", sample), ("VOC-instances", voc)]:
            policy.check_env(SimpleNamespace(backend=backend, dataset=SimpleNamespace(name=name)))
            got.append(policy.label(s))
        assert tuple(got) == want
