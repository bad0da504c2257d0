"""Write tiny CUB-200-2011, Stanford Cars and FGVC-Aircraft copies in their official layouts.

Every index/annotation file is written as the release has it — the full class lists (200 / 196 /
100 names) included — but only a few classes have images, a few small JPEGs each. The Cars
``.mat`` files are MATLAB struct arrays / cell arrays written with ``scipy.io.savemat`` in the
structure the devkit has (``annotations``: 1×N struct with ``bbox_x1..bbox_y2``, ``class``,
``fname``; ``class_names``: 1×196 cell), which torchvision's ``StanfordCars`` reads.

Each writer returns the expected ``train``/``test`` lists of ``(absolute path, 0-based label)``
in the official order, the class ``names`` and the dataset ``folder``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

# class -> number of training images; class 5 is small, to exercise the rounding of the subsets
TRAIN_PER_CLASS = {0: 20, 2: 20, 5: 7}
TEST_PER_CLASS = 2
IMAGE_SIZE = (24, 20)  # (width, height): not square, like the real photos


def write_image(path: Path, rng: np.random.Generator, mode: str = "RGB",
                size: tuple[int, int] = IMAGE_SIZE) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = rng.integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(pixels).convert(mode).save(path, format="JPEG", quality=90)


def _split_plan(rng: np.random.Generator) -> list[tuple[int, bool]]:
    """``(0-based class, is_train)`` per image, grouped by class, train/test interleaved."""
    plan = []
    for c, n_train in TRAIN_PER_CLASS.items():
        flags = np.array([True] * n_train + [False] * TEST_PER_CLASS)
        plan += [(c, bool(f)) for f in rng.permutation(flags)]
    return plan


def _expected(folder: Path, rels: list[str], labels: list[int], is_train: list[bool]) -> dict:
    return {
        "train": [(str(folder / r), c) for r, c, t in zip(rels, labels, is_train) if t],
        "test": [(str(folder / r), c) for r, c, t in zip(rels, labels, is_train) if not t],
    }


def write_cub(root: Path, seed: int = 0) -> dict:
    """``root/CUB_200_2011`` with images of classes 1, 3 and 6 (1-based) only.

    One test image is grey (CUB has a few): the datasets must still give 3 channels.
    """
    rng = np.random.default_rng(seed)
    folder = Path(root) / "CUB_200_2011"
    names = [f"{i:03d}.Bird_{i}" for i in range(1, 201)]
    rels, labels, is_train = [], [], []
    for n, (c, train) in enumerate(_split_plan(rng), 1):
        rel = f"{names[c]}/Bird_{c + 1}_{n:04d}_{1000 + 7 * n}.jpg"
        grey = not train and not any(not t for t in is_train)  # the first test image
        write_image(folder / "images" / rel, rng, mode="L" if grey else "RGB")
        rels.append(f"images/{rel}")
        labels.append(c)
        is_train.append(train)
    ids = range(1, len(rels) + 1)
    (folder / "classes.txt").write_text("".join(f"{i} {nm}\n" for i, nm in enumerate(names, 1)))
    (folder / "images.txt").write_text(
        "".join(f"{i} {r[len('images/'):]}\n" for i, r in zip(ids, rels)))
    (folder / "image_class_labels.txt").write_text(
        "".join(f"{i} {c + 1}\n" for i, c in zip(ids, labels)))
    (folder / "train_test_split.txt").write_text(
        "".join(f"{i} {int(t)}\n" for i, t in zip(ids, is_train)))
    return {**_expected(folder, rels, labels, is_train), "names": names, "folder": folder}


def _annotations(fnames: list[str], classes: list[int] | None) -> np.ndarray:
    """The devkit's 1×N struct array (uint8/uint16 2-D values, ``fname`` a char array)."""
    fields = ["bbox_x1", "bbox_y1", "bbox_x2", "bbox_y2"]
    if classes is not None:
        fields.append("class")
    fields.append("fname")
    table = np.zeros((1, len(fnames)), dtype=[(f, "O") for f in fields])
    for j, fname in enumerate(fnames):
        row = [np.array([[3]], np.uint16), np.array([[2]], np.uint16),
               np.array([[20]], np.uint16), np.array([[17]], np.uint16)]
        if classes is not None:
            row.append(np.array([[classes[j] + 1]], np.uint8))  # 1-based
        row.append(np.array([fname]))
        table[0, j] = tuple(row)
    return table


def write_cars(root: Path, seed: int = 1) -> dict:
    """``root/stanford_cars`` as torchvision's StanfordCars reads it (train and test images
    share file names, as in the release: ``00001.jpg`` is in both folders)."""
    import scipy.io

    rng = np.random.default_rng(seed)
    folder = Path(root) / "stanford_cars"
    names = [f"Make{i} Model{i} Sedan {2000 + i % 13}" for i in range(1, 197)]
    plan = list(rng.permutation(np.array(_split_plan(rng), dtype=object)))  # classes mixed
    out = {"names": names, "folder": folder}
    for split, images, mat in (("train", "cars_train", folder / "devkit" / "cars_train_annos.mat"),
                               ("test", "cars_test", folder / "cars_test_annos_withlabels.mat")):
        classes = [int(c) for c, t in plan if bool(t) == (split == "train")]
        fnames = [f"{i:05d}.jpg" for i in range(1, len(classes) + 1)]
        for f in fnames:
            write_image(folder / images / f, rng)
        mat.parent.mkdir(parents=True, exist_ok=True)
        scipy.io.savemat(mat, {"annotations": _annotations(fnames, classes)})
        if split == "test":  # the devkit's own test annotations carry no labels
            scipy.io.savemat(folder / "devkit" / "cars_test_annos.mat",
                             {"annotations": _annotations(fnames, None)})
        out[split] = [(str(folder / images / f), c) for f, c in zip(fnames, classes)]
    cell = np.empty((1, len(names)), dtype=object)
    cell[0, :] = names
    scipy.io.savemat(folder / "devkit" / "cars_meta.mat", {"class_names": cell})
    return out


AIRCRAFT_VARIANTS = (["707-320", "727-200", "Cessna 172", "F/A-18", "Falcon 2000"]
                     + [f"Variant-{i:02d}" for i in range(95)])


def write_aircraft(root: Path, seed: int = 2) -> dict:
    """``root/fgvc-aircraft-2013b/data`` as torchvision's FGVCAircraft reads it; variant names
    hold spaces and slashes, as the real ones do."""
    rng = np.random.default_rng(seed)
    folder = Path(root) / "fgvc-aircraft-2013b"
    data = folder / "data"
    data.mkdir(parents=True, exist_ok=True)
    (data / "variants.txt").write_text("".join(f"{v}\n" for v in AIRCRAFT_VARIANTS))
    # classes 0, 2, 5 are "707-320", "Cessna 172", "Variant-00"
    rels, labels, is_train = [], [], []
    for c, train in _split_plan(rng):
        image_id = f"{int(rng.integers(0, 10**7)):07d}"
        while f"data/images/{image_id}.jpg" in rels:
            image_id = f"{int(rng.integers(0, 10**7)):07d}"
        write_image(data / "images" / f"{image_id}.jpg", rng)
        rels.append(f"data/images/{image_id}.jpg")
        labels.append(c)
        is_train.append(train)
    order = rng.permutation(len(rels))  # the release lists the images in no class order
    lines = {True: [], False: []}
    for i in order:
        lines[is_train[i]].append(f"{Path(rels[i]).stem} {AIRCRAFT_VARIANTS[labels[i]]}\n")
    trainval = lines[True]
    (data / "images_variant_trainval.txt").write_text("".join(trainval))
    (data / "images_variant_train.txt").write_text("".join(trainval[::2]))
    (data / "images_variant_val.txt").write_text("".join(trainval[1::2]))
    (data / "images_variant_test.txt").write_text("".join(lines[False]))
    exp = {"names": list(AIRCRAFT_VARIANTS), "folder": folder}
    for split, key in (("train", True), ("test", False)):
        exp[split] = [(str(data / "images" / f"{ln.split(' ', 1)[0]}.jpg"),
                       AIRCRAFT_VARIANTS.index(ln.rstrip("\n").split(" ", 1)[1]))
                      for ln in lines[key]]
    return exp


WRITERS = {"cub200": write_cub, "stanford_cars": write_cars, "fgvc_aircraft": write_aircraft}
