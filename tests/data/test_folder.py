"""The listing of a user's image tree (dm_ssl.data.folder), on generated JPEG/PNG trees."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dm_ssl.data.errors import DatasetError
from dm_ssl.data.folder import list_folder


def _image(path: Path, size: tuple[int, int] = (7, 5), mode: str = "RGB", seed: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    shape = (size[1], size[0]) + ((3,) if mode == "RGB" else ())
    Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode).save(path)


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "mine"
    _image(root / "train" / "zèbre" / "b.png", (9, 4), "L")
    _image(root / "train" / "zèbre" / "sub" / "a.jpg", (33, 17))
    _image(root / "train" / "ästhetik" / "x.JPEG")
    _image(root / "train" / "cat" / "1.webp")
    (root / "train" / "cat" / "notes.txt").write_text("not an image")
    (root / "train" / "cat" / "._1.webp").write_bytes(b"AppleDouble")
    (root / "train" / ".ipynb_checkpoints").mkdir()
    _image(root / "unlabeled" / "deep" / "u1.png")
    _image(root / "unlabeled" / "u0.jpg")
    _image(root / "val" / "cat" / "v.png")
    _image(root / "val" / "zèbre" / "w.png", mode="L")
    return root


def test_classes_labels_and_order(tree: Path) -> None:
    listing = list_folder(tree)
    assert listing.classes == ("cat", "zèbre", "ästhetik")  # sorted, as ImageFolder
    assert listing.train == (("train/cat/1.webp", 0), ("train/zèbre/b.png", 1),
                             ("train/zèbre/sub/a.jpg", 1), ("train/ästhetik/x.JPEG", 2))
    assert listing.unlabeled == ("unlabeled/u0.jpg", "unlabeled/deep/u1.png")
    assert listing.eval_split == "val"
    assert listing.eval == (("val/cat/v.png", 0), ("val/zèbre/w.png", 1))


def test_test_folder_when_there_is_no_val(tree: Path) -> None:
    (tree / "val").rename(tree / "test")
    listing = list_folder(tree)
    assert listing.eval_split == "test" and listing.eval[0] == ("test/cat/v.png", 0)
    assert list_folder(tree).unlabeled  # and unlabeled/ stays optional:
    import shutil

    shutil.rmtree(tree / "unlabeled")
    assert list_folder(tree).unlabeled == ()


def test_fingerprint_follows_the_files(tree: Path) -> None:
    before = list_folder(tree).fingerprint()
    assert list_folder(tree).fingerprint() == before
    _image(tree / "unlabeled" / "u2.png")
    added = list_folder(tree).fingerprint()
    assert added != before
    _image(tree / "unlabeled" / "u2.png", (40, 40))  # same name, other content
    assert list_folder(tree).fingerprint() != added


@pytest.mark.parametrize("damage, named", [
    (lambda r: (r / "train" / "empty").mkdir(), "train/empty holds no images"),
    (lambda r: _image(r / "train" / "loose.png"), "loose.png lies in"),
    (lambda r: _image(r / "val" / "dog" / "d.png"), "val/dog has no counterpart"),
    (lambda r: __import__("shutil").rmtree(r / "val"), "no evaluation images"),
    (lambda r: __import__("shutil").rmtree(r / "train"), "missing folder"),
])
def test_one_error_naming_the_folder(tree: Path, damage, named: str) -> None:
    damage(tree)
    with pytest.raises(DatasetError, match=named) as err:
        list_folder(tree)
    assert str(tree) in str(err.value) and "\n" not in str(err.value)
    assert err.value.path is not None


def test_missing_root_and_a_file_as_root(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="does not exist"):
        list_folder(tmp_path / "nope")
    (tmp_path / "f").write_text("x")
    with pytest.raises(DatasetError, match="is not a folder"):
        list_folder(tmp_path / "f")


def test_decode_any_mode_to_rgb_at_size(tree: Path, tmp_path: Path) -> None:
    from dm_ssl.data.folder import decode_all, decode_image

    grey = decode_image(tree / "train" / "zèbre" / "b.png", 8)
    assert grey.shape == (8, 8, 3) and grey.dtype == np.uint8
    assert (grey[..., 0] == grey[..., 1]).all()  # grey replicated, as ImageFolder's RGB
    pal = tmp_path / "p.png"
    img = Image.new("P", (5, 3))
    img.info["transparency"] = 0
    img.save(pal, transparency=0)
    cmyk = tmp_path / "c.jpg"
    Image.new("CMYK", (6, 6), (0, 255, 0, 0)).save(cmyk)
    (tmp_path / "bad.jpg").write_bytes(b"\xff\xd8\xff not a jpeg")
    rels = ["p.png", "c.jpg", "bad.jpg"]
    out, errors = decode_all(tmp_path, rels, 4, workers=2)
    assert out.shape == (3, 4, 4, 3) and set(errors) == {2}
    assert errors[2].split(":")[0] in ("OSError", "UnidentifiedImageError")
    assert not out[2].any()  # an unreadable file's row stays zero
    np.testing.assert_allclose(out[1, 0, 0], (255, 0, 255), atol=40)  # CMYK magenta as RGB


def test_channel_stats_match_a_float64_reference() -> None:
    from dm_ssl.data.folder import channel_stats

    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (5, 3, 4, 3), dtype=np.uint8)
    mean, std = channel_stats(images)
    ref = images.astype(np.float64) / 255
    np.testing.assert_allclose(mean, ref.mean((0, 1, 2)), rtol=1e-12)
    np.testing.assert_allclose(std, ref.std((0, 1, 2)), rtol=1e-12)
