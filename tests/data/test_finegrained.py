import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader
from torchvision import transforms as T

from dm_ssl.data import (
    DATASETS,
    IMAGENET_MEAN,
    IMAGENET_STD,
    DatasetError,
    FineGrainedDataset,
    ModeSafeRandAugment,
    StackCrops,
    build_finegrained_ssl_datasets,
    class_balanced_subset,
    finegrained_class_names,
    finegrained_dir,
    finegrained_eval_transform,
    finegrained_train_transform,
    get_or_create_labeled_subset,
    labeled_list_path,
    read_cub200,
    read_fgvc_aircraft,
    read_finegrained,
    read_image_list,
    read_stanford_cars,
)

from .finegrained_files import TRAIN_PER_CLASS, WRITERS, write_aircraft, write_cars, write_cub

NAMES = sorted(WRITERS)
SIZE = {"resize": 36, "crop": 32}


@pytest.fixture(params=NAMES)
def fg(tmp_path, request):
    """One tiny dataset in its official layout under ``tmp_path/"data"``: (name, root, exp)."""
    root = tmp_path / "data"
    return request.param, root, WRITERS[request.param](root)


@pytest.fixture
def cub(tmp_path):
    root = tmp_path / "data"
    return root, write_cub(root)


# -- readers -----------------------------------------------------------------------------------

def test_readers_return_paths_and_zero_based_labels(fg):
    name, root, exp = fg
    reader = {"cub200": read_cub200, "stanford_cars": read_stanford_cars,
              "fgvc_aircraft": read_fgvc_aircraft}[name]
    for split in ("train", "test"):
        got = reader(root, split)
        assert got == exp[split]
        assert all(isinstance(p, str) and isinstance(c, int) for p, c in got)
        assert all(os.path.isfile(p) for p, _ in got)
    assert {c for _, c in exp["train"]} == set(TRAIN_PER_CLASS)  # 0-based: class 1 -> 0
    assert not {p for p, _ in exp["train"]} & {p for p, _ in exp["test"]}
    names = finegrained_class_names(name, root)
    assert names == exp["names"] and len(names) == DATASETS[name].num_classes


def test_root_may_be_the_dataset_folder(fg):
    name, root, exp = fg
    folder = exp["folder"]
    assert finegrained_dir(name, root) == folder and finegrained_dir(name, folder) == folder
    assert read_finegrained(name, folder, "test") == exp["test"]
    if name == "fgvc_aircraft":  # ... or its data/ folder
        assert read_finegrained(name, folder / "data", "test") == exp["test"]


def test_cub_extracted_twice_and_empty_images(tmp_path):
    """``CUB_200_2011/CUB_200_2011/`` (the archive extracted into a folder of its name) is
    found; an empty listed image is refused at the start, naming it, not at the first
    evaluation that opens it."""
    exp = write_cub(tmp_path / "inner")
    outer = tmp_path / "data" / "CUB_200_2011"
    outer.mkdir(parents=True)
    (tmp_path / "inner" / "CUB_200_2011").rename(outer / "CUB_200_2011")
    (outer / "attributes.txt").write_text("1 has_bill_shape::curved\n")
    test = read_cub200(tmp_path / "data", "test")
    assert [c for _, c in test] == [c for _, c in exp["test"]]
    assert all(os.path.isfile(p) for p, _ in test)
    Path(test[1][0]).write_bytes(b"")
    with pytest.raises(DatasetError, match=f"empty image file .*{Path(test[1][0]).name}"):
        read_cub200(tmp_path / "data", "test")


def test_cars_as_kaggle_nests_it_and_as_the_original_full_download(tmp_path):
    """The Kaggle copy (cars_train/cars_train/, car_devkit/devkit/) and the original download
    (car_ims/ + cars_annos.mat with its test flag) give the devkit layout's images, labels
    and names."""
    import scipy.io

    exp = write_cars(tmp_path / "tv")
    folder = exp["folder"]
    kaggle = tmp_path / "kaggle" / "stanford_cars"
    shutil.copytree(folder, kaggle)
    for name in ("cars_train", "cars_test"):
        (kaggle / name).rename(kaggle / "x")
        (kaggle / name).mkdir()
        (kaggle / "x").rename(kaggle / name / name)
    (kaggle / "car_devkit").mkdir()
    (kaggle / "devkit").rename(kaggle / "car_devkit" / "devkit")
    full = tmp_path / "full" / "stanford_cars"
    (full / "car_ims").mkdir(parents=True)
    rows = [(split, p, c) for split in ("train", "test") for p, c in exp[split]]
    table = np.zeros((1, len(rows)), dtype=[(f, "O") for f in ("relative_im_path", "class",
                                                                "test")])
    for j, (split, path, c) in enumerate(rows):
        shutil.copy(path, full / "car_ims" / f"{j + 1:06d}.jpg")
        table[0, j] = (np.array([f"car_ims/{j + 1:06d}.jpg"]), np.array([[c + 1]], np.uint8),
                       np.array([[split == "test"]], np.uint8))
    cell = np.empty((1, 196), dtype=object)
    cell[0, :] = exp["names"]
    scipy.io.savemat(full / "cars_annos.mat", {"annotations": table, "class_names": cell})

    def pixels(path):
        return np.asarray(Image.open(path)).tobytes()

    for root in (kaggle.parent, full.parent, full):
        assert finegrained_class_names("stanford_cars", root) == exp["names"]
        for split in ("train", "test"):
            got = read_stanford_cars(root, split)
            assert [c for _, c in got] == [c for _, c in exp[split]]
            assert [pixels(p) for p, _ in got] == [pixels(p) for p, _ in exp[split]]


def test_cub_labels_follow_the_index_files(tmp_path):
    """Independent of the writer: CUB joins the three files on the image id."""
    folder = tmp_path / "CUB_200_2011"
    write_cub(tmp_path)
    for f in ("images.txt", "image_class_labels.txt", "train_test_split.txt"):
        (folder / f).write_text("")
    (folder / "images.txt").write_text("7 a/x.jpg\n3 b/y.jpg\n5 c/z.jpg\n")
    (folder / "image_class_labels.txt").write_text("3 200\n5 1\n7 17\n")
    (folder / "train_test_split.txt").write_text("5 1\n3 0\n7 1\n")
    for rel in ("a/x.jpg", "b/y.jpg", "c/z.jpg"):
        Image.new("RGB", (4, 4)).save(folder / "images" / rel.replace("/", "_"))
        (folder / "images" / rel).parent.mkdir(parents=True, exist_ok=True)
        os.replace(folder / "images" / rel.replace("/", "_"), folder / "images" / rel)
    assert read_cub200(folder, "train") == [(str(folder / "images/a/x.jpg"), 16),
                                            (str(folder / "images/c/z.jpg"), 0)]
    assert read_cub200(folder, "test") == [(str(folder / "images/b/y.jpg"), 199)]


def test_cars_and_aircraft_read_like_torchvision(tmp_path):
    """torchvision's own classes on the same files: our readers parse the layout as they do."""
    from torchvision.datasets import FGVCAircraft, StanfordCars

    write_cars(tmp_path)
    write_aircraft(tmp_path)
    for split in ("train", "test"):
        tv = StanfordCars(tmp_path, split=split)
        assert read_stanford_cars(tmp_path, split) == [(p, int(c)) for p, c in tv._samples]
        tv = FGVCAircraft(tmp_path, split="trainval" if split == "train" else "test")
        assert read_fgvc_aircraft(tmp_path, split) == list(zip(tv._image_files, tv._labels))
    assert finegrained_class_names("stanford_cars", tmp_path) == StanfordCars(tmp_path).classes
    assert finegrained_class_names("fgvc_aircraft", tmp_path) == FGVCAircraft(tmp_path).classes


KEY_FILES = {
    "cub200": ["images.txt", "image_class_labels.txt", "train_test_split.txt", "classes.txt"],
    "stanford_cars": ["devkit/cars_train_annos.mat", "devkit/cars_meta.mat"],
    "fgvc_aircraft": ["data/variants.txt", "data/images_variant_trainval.txt"],
}
URLS = {
    "cub200": "https://data.caltech.edu/records/65de6-vp158",
    "stanford_cars": "https://github.com/pytorch/vision/issues/7545",
    "fgvc_aircraft": "https://www.robots.ox.ac.uk/~vgg/data/fgvc-aircraft/archives/"
                     "fgvc-aircraft-2013b.tar.gz",
}


def _assert_names(err: DatasetError, path, name):
    assert str(path) in str(err) and err.path == str(path)
    assert URLS[name] in str(err) and "Extract it into" in str(err)


@pytest.mark.parametrize("name,rel", [(n, f) for n in NAMES for f in KEY_FILES[n]])
def test_missing_file_is_one_dataset_error_naming_it(tmp_path, name, rel):
    exp = WRITERS[name](tmp_path)
    (exp["folder"] / rel).unlink()
    with pytest.raises(DatasetError, match="missing file") as info:
        read_finegrained(name, tmp_path, "train")
    _assert_names(info.value, exp["folder"] / rel, name)


def test_missing_test_annotations_and_images(fg):
    name, root, exp = fg
    listing = {"cub200": None, "stanford_cars": "cars_test_annos_withlabels.mat",
               "fgvc_aircraft": "data/images_variant_test.txt"}[name]
    if listing:
        (exp["folder"] / listing).unlink()
        with pytest.raises(DatasetError, match="missing file") as info:
            read_finegrained(name, root, "test")
        _assert_names(info.value, exp["folder"] / listing, name)
        read_finegrained(name, root, "train")  # the other split is unaffected
    image = exp["train"][3][0]
    os.unlink(image)
    with pytest.raises(DatasetError, match="missing image") as info:
        read_finegrained(name, root, "train")
    _assert_names(info.value, image, name)


def test_missing_root_names_the_expected_file(tmp_path):
    with pytest.raises(DatasetError) as info:
        read_cub200(tmp_path / "nowhere")
    _assert_names(info.value, tmp_path / "nowhere" / "CUB_200_2011" / "classes.txt", "cub200")


def _drop_first_line(text):
    return text.split("\n", 1)[1]


@pytest.mark.parametrize("rel,edit,match", [
    ("image_class_labels.txt", lambda t: "1 201\n" + _drop_first_line(t), "outside 1..200"),
    ("image_class_labels.txt", lambda t: "1 x\n" + _drop_first_line(t), "line 1"),
    ("classes.txt", lambda t: "1 only_one_class\n", "official release has 200"),
    ("train_test_split.txt", _drop_first_line, "different image ids"),
    ("images.txt", lambda t: t + "1 again.jpg\n", "id 1 appears twice"),
])
def test_damaged_cub_files(cub, rel, edit, match):
    root, exp = cub
    path = exp["folder"] / rel
    path.write_text(edit(path.read_text()))
    with pytest.raises(DatasetError, match=match) as info:
        read_cub200(root)
    _assert_names(info.value, path, "cub200")


def test_damaged_cars_files(tmp_path):
    exp = write_cars(tmp_path)
    folder = exp["folder"]
    withlabels = folder / "cars_test_annos_withlabels.mat"
    shutil.copy(folder / "devkit" / "cars_test_annos.mat", withlabels)  # the unlabeled one
    with pytest.raises(DatasetError, match="'fname' and 'class'.*withlabels") as info:
        read_stanford_cars(tmp_path, "test")
    _assert_names(info.value, withlabels, "stanford_cars")
    (folder / "devkit" / "cars_meta.mat").write_bytes(b"MATLAB 5.0 but not really")
    with pytest.raises(DatasetError, match="cannot read") as info:
        read_stanford_cars(tmp_path, "train")
    _assert_names(info.value, folder / "devkit" / "cars_meta.mat", "stanford_cars")


def test_unknown_aircraft_variant(tmp_path):
    exp = write_aircraft(tmp_path)
    path = exp["folder"] / "data" / "images_variant_test.txt"
    path.write_text(path.read_text() + "1234567 Boeing 747-8\n")
    with pytest.raises(DatasetError, match="'Boeing 747-8' is not in variants.txt") as info:
        read_fgvc_aircraft(tmp_path, "test")
    _assert_names(info.value, path, "fgvc_aircraft")


# -- labeled subsets ---------------------------------------------------------------------------

@pytest.mark.parametrize("percent", [15, 30, 50])
def test_subset_is_class_balanced_seeded_and_saved(fg, tmp_path, percent):
    name, root, exp = fg
    labels = np.array([c for _, c in exp["train"]])
    lb, path = get_or_create_labeled_subset(name, root, percent, 3, tmp_path / "run")
    assert path == tmp_path / "run" / f"train_{percent}.txt" == labeled_list_path(
        tmp_path / "run", percent)
    for c, n in TRAIN_PER_CLASS.items():
        assert (labels[lb] == c).sum() == max(1, int(np.floor(percent / 100 * n + 0.5)))
    np.testing.assert_array_equal(lb, class_balanced_subset(labels, percent / 100, 3))
    # the list: Self-Tuning's format, paths relative to the dataset folder
    folder = exp["folder"]
    assert read_image_list(path) == [
        (os.path.relpath(exp["train"][i][0], folder).replace(os.sep, "/"), exp["train"][i][1])
        for i in lb]
    other, _ = get_or_create_labeled_subset(name, root, percent, 4, tmp_path / "run4")
    assert not np.array_equal(lb, other)
    again, _ = get_or_create_labeled_subset(name, root, percent, 3, tmp_path / "again")
    np.testing.assert_array_equal(lb, again)


def test_saved_list_is_reused_not_redrawn(cub, tmp_path):
    root, exp = cub
    run = tmp_path / "run"
    lb, path = get_or_create_labeled_subset("cub200", root, 30, 0, run)
    # a hand-edited (but valid) list is what the run uses from then on
    entries = read_image_list(path)[1:]
    path.write_text("".join(f"{p} {c}\n" for p, c in entries))
    reused, _ = get_or_create_labeled_subset("cub200", root, 30, 0, run)
    np.testing.assert_array_equal(reused, lb[1:])
    # a list without its settings file (copied in by hand) is accepted as well
    (run / "train_30.meta.json").unlink()
    reused, _ = get_or_create_labeled_subset("cub200", root, 30, 0, run)
    np.testing.assert_array_equal(reused, lb[1:])


@pytest.mark.parametrize("change,match", [
    ("seed", "seed: saved 0, now 1"),
    ("data", "labels_sha256"),
    ("bad_path", "is not an image of the CUB-200-2011 training set"),
    ("bad_label", "has label"),
    ("duplicate", "listed twice"),
    ("garbage", "integer label"),
])
def test_saved_list_that_does_not_match_is_refused(cub, tmp_path, change, match):
    root, exp = cub
    run = tmp_path / "run"
    _, path = get_or_create_labeled_subset("cub200", root, 15, 0, run)
    seed = 0
    entries = read_image_list(path)
    if change == "seed":
        seed = 1
    elif change == "data":  # the training set changed under the run: one image relabeled
        labels = exp["folder"] / "image_class_labels.txt"
        labels.write_text(labels.read_text().replace(" 1\n", " 4\n", 1))
    elif change == "bad_path":
        entries[0] = ("images/nowhere.jpg", entries[0][1])
    elif change == "bad_label":
        entries[0] = (entries[0][0], entries[0][1] + 1)
    elif change == "duplicate":
        entries.append(entries[0])
    if change in ("bad_path", "bad_label", "duplicate"):
        path.write_text("".join(f"{p} {c}\n" for p, c in entries))
    if change == "garbage":
        path.write_text("images/a.jpg\n")
    with pytest.raises(DatasetError, match=match) as info:
        get_or_create_labeled_subset("cub200", root, 15, seed, run)
    assert str(path) in str(info.value) and info.value.path == str(path)


def test_subset_arguments_are_checked(cub, tmp_path):
    root, _ = cub
    for bad in (0, 101, -5, True, "15"):
        with pytest.raises(ValueError, match="percent"):
            get_or_create_labeled_subset("cub200", root, bad, 0, tmp_path)
    with pytest.raises(ValueError, match="known: cub200, fgvc_aircraft, stanford_cars"):
        get_or_create_labeled_subset("cub", root, 15, 0, tmp_path)
    lb, path = get_or_create_labeled_subset("cub200", root, np.int64(50), 0, tmp_path)
    assert path.name == "train_50.txt"
    assert json.loads((tmp_path / "train_50.meta.json").read_text())["percent"] == 50


# -- a user's Self-Tuning label list --------------------------------------------------------------

def _self_tuning_copy(tmp_path, exp, picks):
    """Self-Tuning's layout: ``<st>/train/<class>/<file>`` copies and ``image_list/train_15.txt``
    with paths relative to ``<st>`` (the folder holding image_list/)."""
    st = tmp_path / "CUB200"
    lines = []
    for i in picks:
        src, label = exp["train"][i]
        rel = f"train/{label:03d}/{os.path.basename(src)}"
        (st / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(src, st / rel)
        lines.append(f"{rel} {label}\n")
    (st / "image_list").mkdir()
    path = st / "image_list" / "train_15.txt"
    path.write_text("".join(lines))
    return path


def test_user_label_list_is_accepted(cub, tmp_path):
    root, exp = cub
    picks = [0, 5, 11, 30, 46]
    path = _self_tuning_copy(tmp_path, exp, picks)
    dsets, info = build_finegrained_ssl_datasets("cub200", root, 15, 0, tmp_path / "run",
                                                 label_list=path, **SIZE)
    np.testing.assert_array_equal(dsets["train_lb"].source_idx, picks)
    assert sorted(dsets["train_ulb"].source_idx) == sorted(set(range(47)) - set(picks))
    assert info.num_lb == 5 and info.num_ulb == 42
    # the saved list names the dataset's own images; rebuilding reuses it
    assert [p for p, _ in read_image_list(info.split_path)] == [
        os.path.relpath(exp["train"][i][0], exp["folder"]) for i in picks]
    again, _ = build_finegrained_ssl_datasets("cub200", root, 15, 0, tmp_path / "run",
                                              label_list=path, **SIZE)
    np.testing.assert_array_equal(again["train_lb"].source_idx, picks)
    # paths relative to the dataset folder, or absolute, are accepted too
    own = tmp_path / "own.txt"
    own.write_text(f"{exp['train'][7][0]} {exp['train'][7][1]}\n"
                   + (info.split_path.read_text().splitlines()[0] + "\n"))
    lb, _ = get_or_create_labeled_subset("cub200", root, 15, 0, tmp_path / "r2", label_list=own)
    assert lb.tolist() == [0, 7]


@pytest.mark.parametrize("change,match", [
    ("bad_path", "no such image"),
    ("out_of_range", r"label 200 is outside \[0, 200\)"),
    ("wrong_label", "numbers the classes differently"),
    ("test_image", "not an image of the CUB-200-2011 training set"),
    ("duplicate", "again"),
])
def test_user_label_list_is_rejected(cub, tmp_path, change, match):
    root, exp = cub
    path = _self_tuning_copy(tmp_path, exp, [0, 5])
    lines = path.read_text().splitlines()
    p, c = lines[0].rsplit(" ", 1)
    if change == "bad_path":
        lines[0] = f"train/000/missing.jpg {c}"
    elif change == "out_of_range":
        lines[0] = f"{p} 200"
    elif change == "wrong_label":
        lines[0] = f"{p} {(int(c) + 1) % 200}"
    elif change == "test_image":
        lines[0] = f"{exp['test'][0][0]} {exp['test'][0][1]}"
    else:
        lines.append(lines[0])
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DatasetError, match=match) as info:
        build_finegrained_ssl_datasets("cub200", root, 15, 0, tmp_path / "run",
                                       label_list=path, **SIZE)
    assert str(path) in str(info.value) and info.value.path == str(path)
    assert not (tmp_path / "run").exists()  # nothing saved for a run that cannot start


def test_saved_list_and_another_label_list_conflict(cub, tmp_path):
    root, exp = cub
    run = tmp_path / "run"
    path = _self_tuning_copy(tmp_path, exp, [0, 5])
    _, saved = get_or_create_labeled_subset("cub200", root, 15, 0, run)  # drawn
    with pytest.raises(DatasetError, match="label_list: saved None") as info:
        get_or_create_labeled_subset("cub200", root, 15, 0, run, label_list=path)
    assert str(saved) in str(info.value)
    (run / "train_15.meta.json").unlink()
    with pytest.raises(DatasetError, match="another labeled set than label_list"):
        get_or_create_labeled_subset("cub200", root, 15, 0, run, label_list=path)


# -- transforms ----------------------------------------------------------------------------------

def _types(compose):
    return [type(t) for t in compose.transforms]


def test_transforms_are_self_tunings():
    t = finegrained_train_transform(36, 32)
    assert _types(t) == [T.Resize, T.RandomResizedCrop, T.RandomHorizontalFlip, T.ToTensor,
                         T.Normalize]
    assert tuple(t.transforms[0].size) == (36, 36) and t.transforms[1].size == (32, 32)
    assert t.transforms[4].mean == list(IMAGENET_MEAN) and t.transforms[4].std == list(IMAGENET_STD)
    s = finegrained_train_transform(36, 32, randaugment=True)
    assert _types(s)[3] is ModeSafeRandAugment and (s.transforms[3].op.n, s.transforms[3].op.m) \
        == (3, 10)
    assert finegrained_train_transform(square_resize=False).transforms[0].size == 256
    e = finegrained_eval_transform()
    assert _types(e) == [T.Resize, T.CenterCrop, T.ToTensor, T.Normalize]
    assert tuple(e.transforms[0].size) == (256, 256) and e.transforms[1].size == (224, 224)
    with pytest.raises(ValueError, match="crop <= resize"):
        finegrained_eval_transform(32, 36)


def test_ten_crop_stacks_torchvisions_ten_crops():
    img = Image.fromarray(np.random.default_rng(0).integers(0, 256, (20, 24, 3), np.uint8))
    out = finegrained_eval_transform(36, 32, ten_crop=True)(img)
    assert out.shape == (10, 3, 32, 32) and out.dtype == torch.float32
    crops = T.TenCrop(32)(img.resize((36, 36), Image.BILINEAR))
    norm = T.Compose([T.ToTensor(), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)])
    for k in (0, 4, 5, 9):
        torch.testing.assert_close(out[k], norm(crops[k]), atol=0.05, rtol=0)
    center = finegrained_eval_transform(36, 32)(img)
    torch.testing.assert_close(out[4], center)  # the fifth crop is the centre crop
    assert isinstance(finegrained_eval_transform(36, 32, ten_crop=True).transforms[2], StackCrops)


# -- datasets --------------------------------------------------------------------------------------

def _check_lb(item, idx, shape, keys=("idx_lb", "x_lb", "y_lb")):
    assert set(item) == set(keys) and item["idx_lb"] == idx
    for k in keys:
        if k.startswith("x_"):
            assert item[k].shape == shape and item[k].dtype == torch.float32
    assert isinstance(item["y_lb"], (int, np.integer))


def test_built_datasets_yield_semilearn_items(fg, tmp_path, seeded_rngs):
    name, root, exp = fg
    run = tmp_path / "run"
    dsets, info = build_finegrained_ssl_datasets(name, root, 30, 1, run, **SIZE)
    assert set(dsets) == {"train_lb", "train_ulb", "eval", "test"} and dsets["test"] is None
    k = DATASETS[name].num_classes
    assert (info.name, info.num_classes, info.img_size, info.channels) == (name, k, 32, 3)
    assert info.class_names == tuple(exp["names"]) and info.split_path == run / "train_30.txt"
    assert (info.num_train, info.num_lb + info.num_ulb, info.num_eval) == (47, 47, 6)
    assert info.num_labels == info.num_lb == 6 + 6 + 2 and info.seed == 1
    assert info.mean == IMAGENET_MEAN

    lb, ulb, ev = dsets["train_lb"], dsets["train_ulb"], dsets["eval"]
    assert isinstance(lb, FineGrainedDataset)
    # lazily loaded: the datasets hold paths, not pixels
    assert lb.data.dtype.kind == "U" and list(ulb.data) == [exp["train"][i][0]
                                                            for i in ulb.source_idx]
    assert not set(lb.source_idx) & set(ulb.source_idx)
    np.testing.assert_array_equal(ulb.targets, [exp["train"][i][1] for i in ulb.source_idx])
    seeded_rngs(0)
    for i in (0, len(lb) - 1):
        item = lb[i]
        _check_lb(item, i, (3, 32, 32))
        assert item["y_lb"] == exp["train"][lb.source_idx[i]][1]
    item = ulb[2]
    assert set(item) == {"idx_ulb", "x_ulb_w", "x_ulb_s"} and item["idx_ulb"] == 2
    assert item["x_ulb_w"].shape == item["x_ulb_s"].shape == (3, 32, 32)
    assert not torch.equal(item["x_ulb_w"], item["x_ulb_s"])
    for i in range(len(ev)):  # CUB's first test image is grey: still 3 channels
        _check_lb(ev[i], i, (3, 32, 32))
        assert ev[i]["y_lb"] == exp["test"][i][1]
        assert torch.equal(ev[i]["x_lb"], ev[i]["x_lb"])  # no augmentation
    batch = next(iter(DataLoader(ulb, batch_size=4)))
    assert batch["x_ulb_s"].shape == (4, 3, 32, 32) and batch["idx_ulb"].tolist() == [0, 1, 2, 3]


def test_ten_crop_eval_and_options(cub, tmp_path):
    root, exp = cub
    dsets, info = build_finegrained_ssl_datasets("cub200", root, 50, 0, tmp_path / "a",
                                                 ten_crop=True, include_lb_to_ulb=True, **SIZE)
    item = dsets["eval"][0]
    assert item["x_lb"].shape == (10, 3, 32, 32) and item["x_lb"].dtype == torch.float32
    assert next(iter(DataLoader(dsets["eval"], batch_size=3)))["x_lb"].shape == (3, 10, 3, 32,
                                                                                 32)
    assert info.num_ulb == info.num_train  # labeled first, then the rest
    np.testing.assert_array_equal(dsets["train_ulb"].source_idx[:info.num_lb],
                                  dsets["train_lb"].source_idx)
    # Self-Tuning's labeled items carry a second (strong) view for the key encoder
    dsets, _ = build_finegrained_ssl_datasets("cub200", root, 50, 0, tmp_path / "a",
                                              algorithm="selftuning", randaugment=False, **SIZE)
    _check_lb(dsets["train_lb"][0], 0, (3, 32, 32), ("idx_lb", "x_lb", "x_lb_s", "y_lb"))
    _check_lb(dsets["eval"][0], 0, (3, 32, 32))
    dsets, _ = build_finegrained_ssl_datasets("cub200", root, 50, 0, tmp_path / "a",
                                              algorithm="comatch", **SIZE)
    assert set(dsets["train_ulb"][0]) == {"idx_ulb", "x_ulb_w", "x_ulb_s_0", "x_ulb_s_1"}


def test_missing_data_writes_nothing_and_bad_image_names_itself(cub, tmp_path):
    root, exp = cub
    with pytest.raises(DatasetError, match="classes.txt"):
        build_finegrained_ssl_datasets("cub200", tmp_path / "nowhere", 15, 0, tmp_path / "run")
    assert not (tmp_path / "run").exists()
    dsets, _ = build_finegrained_ssl_datasets("cub200", root, 15, 0, tmp_path / "run", **SIZE)
    path = dsets["eval"].data[1]
    with open(path, "wb") as f:
        f.write(b"not a jpeg")
    with pytest.raises(DatasetError, match="cannot read image") as info:
        dsets["eval"][1]
    assert info.value.path == path


@pytest.mark.parametrize("views,calls", [("strong", 2), ("all", 4)])
def test_randaugment_on_all_four_views_as_official_self_tuning(cub, tmp_path, monkeypatch,
                                                               views, calls):
    root, _ = cub
    seen = []
    real = ModeSafeRandAugment.__call__

    def spy(self, img):
        seen.append((self.op.n, self.op.m))
        return real(self, img)

    monkeypatch.setattr(ModeSafeRandAugment, "__call__", spy)
    dsets, _ = build_finegrained_ssl_datasets(
        "cub200", root, 50, 0, tmp_path / "a", algorithm="selftuning", randaugment_views=views,
        randaugment_n=2, randaugment_m=10, **SIZE)
    lb, ulb = dsets["train_lb"][0], dsets["train_ulb"][0]
    assert set(lb) >= {"x_lb", "x_lb_s"} and set(ulb) >= {"x_ulb_w", "x_ulb_s"}
    assert seen == [(2, 10)] * calls  # the key views only, or the query views too
    seen.clear()
    dsets["eval"][0]
    assert seen == []
    with pytest.raises(ValueError, match="randaugment_views"):
        build_finegrained_ssl_datasets("cub200", root, 50, 0, tmp_path / "b",
                                       randaugment_views="weak", **SIZE)
