"""Tiny-ImageNet-200 and image-folder readers on tiny fixtures in the official layouts."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dm_ssl.data.errors import DatasetError
from dm_ssl.data.tinyimagenet import (
    TINYIMAGENET_URL,
    image_folder_classes,
    read_image_folder,
    read_tinyimagenet,
    tinyimagenet_class_names,
    tinyimagenet_wnids,
)

WNIDS = ["n02124075", "n01443537", "n09246464"]  # deliberately not sorted
WORDS = {"n02124075": "Egyptian cat", "n01443537": "goldfish, Carassius auratus",
         "n09246464": "cliff, drop, drop-off", "n00001740": "entity"}


def _jpeg(path: Path, rng: np.random.Generator, size: int = 64) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(path, "JPEG")


def write_tinyimagenet(root: Path, per_class: int = 4, val_per_class: int = 2) -> dict:
    """``root/tiny-imagenet-200`` as in the official zip, with a few 64 × 64 JPEGs."""
    rng = np.random.default_rng(0)
    folder = root / "tiny-imagenet-200"
    folder.mkdir(parents=True)
    (folder / "wnids.txt").write_text("".join(f"{w}\n" for w in WNIDS))
    (folder / "words.txt").write_text("".join(f"{w}\t{t}\n" for w, t in WORDS.items()))
    train = []
    for label, wnid in enumerate(WNIDS):
        boxes = []
        for i in range(per_class):
            name = f"{wnid}_{i}.JPEG"
            _jpeg(folder / "train" / wnid / "images" / name, rng)
            boxes.append(f"{name}\t0\t0\t63\t63\n")
            train.append((folder / "train" / wnid / "images" / name, label))
        (folder / "train" / wnid / f"{wnid}_boxes.txt").write_text("".join(boxes))
    val, lines = [], []
    for i in range(val_per_class * len(WNIDS)):
        label = (i * 2 + 1) % len(WNIDS)
        name = f"val_{i}.JPEG"
        _jpeg(folder / "val" / "images" / name, rng)
        lines.append(f"{name}\t{WNIDS[label]}\t1\t2\t40\t50\n")
        val.append((folder / "val" / "images" / name, label))
    (folder / "val" / "val_annotations.txt").write_text("".join(lines))
    (folder / "test" / "images").mkdir(parents=True)
    _jpeg(folder / "test" / "images" / "test_0.JPEG", rng)
    return {"folder": folder, "train": train, "val": val}


def write_image_folder(root: Path, classes=("zebra", "ant", "moose"), per_class: int = 3,
                       val_per_class: int = 1, size: int = 40) -> dict:
    """``root/{train,val}/<class>/*.JPEG`` (ImageNet after valprep.sh)."""
    rng = np.random.default_rng(1)
    out = {}
    for split, n in (("train", per_class), ("val", val_per_class)):
        pairs = []
        for label, name in enumerate(sorted(classes)):
            for i in range(n):
                path = root / split / name / f"{name}_{i}.JPEG"
                _jpeg(path, rng, size)
                pairs.append((path, label))
        out[split] = pairs
    return out


@pytest.fixture
def tiny(tmp_path):
    return tmp_path / "data", write_tinyimagenet(tmp_path / "data")


def _as_pairs(expected):
    return [(str(p), c) for p, c in expected]


@pytest.mark.parametrize("split", ["train", "val"])
def test_reads_tiny_imagenet(tiny, split):
    root, files = tiny
    assert read_tinyimagenet(root, split) == _as_pairs(files[split])
    # root may be the dataset folder itself
    assert read_tinyimagenet(files["folder"], split) == _as_pairs(files[split])


def test_tiny_labels_follow_wnids_and_annotations(tiny):
    root, files = tiny
    assert tinyimagenet_wnids(root) == WNIDS
    assert tinyimagenet_class_names(root) == [WORDS[w] for w in WNIDS]
    val = read_tinyimagenet(root, "val")
    for path, label in val:
        line = next(v for v in (files["folder"] / "val" / "val_annotations.txt").read_text()
                    .splitlines() if v.startswith(Path(path).name + "\t"))
        assert WNIDS[label] == line.split("\t")[1]
    assert sorted({c for _, c in val}) == [0, 1, 2]


def test_tiny_rejects_unknown_split(tiny):
    with pytest.raises(ValueError, match="split"):
        read_tinyimagenet(tiny[0], "test")


@pytest.mark.parametrize("rel, split", [
    ("wnids.txt", "train"),
    ("val/val_annotations.txt", "val"),
    ("val/images/val_3.JPEG", "val"),
    ("train/n01443537/images", "train"),
])
def test_tiny_missing_file_is_named(tiny, rel, split):
    root, files = tiny
    target = files["folder"] / rel
    if target.is_dir():
        for f in target.iterdir():
            f.unlink()
        target.rmdir()
    else:
        target.unlink()
    with pytest.raises(DatasetError) as err:
        read_tinyimagenet(root, split)
    assert str(target) in str(err.value)
    assert TINYIMAGENET_URL in str(err.value)
    assert err.value.path == str(target)


def test_tiny_missing_dataset(tmp_path):
    with pytest.raises(DatasetError, match="wnids.txt") as err:
        read_tinyimagenet(tmp_path, "train")
    assert TINYIMAGENET_URL in str(err.value)


def test_tiny_damaged_annotations(tiny):
    root, files = tiny
    path = files["folder"] / "val" / "val_annotations.txt"
    path.write_text(path.read_text() + "val_99.JPEG\tn99999999\t0\t0\t1\t1\n")
    with pytest.raises(DatasetError, match="line 7: wnid n99999999 is not in wnids.txt"):
        read_tinyimagenet(root, "val")
    path.write_text("no tabs here\n")
    with pytest.raises(DatasetError, match="line 1"):
        read_tinyimagenet(root, "val")


def test_tiny_words_missing_a_class(tiny):
    root, files = tiny
    (files["folder"] / "words.txt").write_text("n02124075\tEgyptian cat\n")
    with pytest.raises(DatasetError, match="words.txt has no words for wnid n01443537"):
        tinyimagenet_class_names(root)


def test_validation_images_sorted_into_class_folders(tmp_path):
    """Preparation scripts often move val/images/x.JPEG to val/<wnid>/images/ (or val/<wnid>/):
    the same labels, read from there."""
    files = write_tinyimagenet(tmp_path)
    folder = files["folder"]
    for k, (path, label) in enumerate(files["val"]):
        target = folder / "val" / WNIDS[label] / ("images" if k % 2 else "")
        target.mkdir(parents=True, exist_ok=True)
        path.rename(target / path.name)
    got = read_tinyimagenet(tmp_path, "val")
    assert [c for _, c in got] == [c for _, c in files["val"]]
    assert [Path(p).name for p, _ in got] == [p.name for p, _ in files["val"]]
    assert all(Path(p).is_file() and Path(p).parent.name in ("images", *WNIDS) for p, _ in got)


def test_reads_image_folder(tmp_path):
    files = write_image_folder(tmp_path)
    for split in ("train", "val"):  # macOS's AppleDouble files beside images copied from a Mac
        for path in tmp_path.glob(f"{split}/*/*.JPEG"):
            (path.parent / f"._{path.name}").write_bytes(b"\x00\x05\x16\x07 metadata")
    assert image_folder_classes(tmp_path) == ["ant", "moose", "zebra"]
    for split in ("train", "val"):
        assert read_image_folder(tmp_path, split) == _as_pairs(files[split])


def test_image_folder_errors(tmp_path):
    with pytest.raises(DatasetError, match="missing folder") as err:
        read_image_folder(tmp_path, "train")
    assert err.value.path == str(tmp_path / "train")
    assert "image-net.org" in str(err.value)
    write_image_folder(tmp_path)
    (tmp_path / "val" / "unknown").mkdir()
    with pytest.raises(DatasetError, match="is not in"):
        read_image_folder(tmp_path, "val")
    (tmp_path / "val" / "unknown").rmdir()
    for f in (tmp_path / "train" / "moose").iterdir():
        f.unlink()
    with pytest.raises(DatasetError, match="no images in") as err:
        read_image_folder(tmp_path, "train")
    assert err.value.path == str(tmp_path / "train" / "moose")
