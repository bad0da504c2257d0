"""augment_on=device: the training streams on the device, sampled as the loader path does."""

import json

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from torchvision.transforms import functional as TF

pytest.importorskip("semilearn")

from dm_ssl import cli  # noqa: E402
from dm_ssl.config import ConfigError, validate  # noqa: E402
from dm_ssl.data import build_ssl_datasets  # noqa: E402
from dm_ssl.data.device_data import DeviceAugmentSpec, DeviceBatches, device_stream  # noqa: E402
from dm_ssl.data.errors import DatasetError  # noqa: E402
from dm_ssl.data.images import load_rgb  # noqa: E402
from dm_ssl.data.op_log import OpLog  # noqa: E402
from dm_ssl.data.sampling import ResumableSampler, SeededDataset  # noqa: E402
from dm_ssl.data.supervised import build_supervised_datasets  # noqa: E402
from dm_ssl.run import evaluate, prepare_run  # noqa: E402

from .cifar_files import write_cifar10  # noqa: E402
from .test_tinyimagenet import write_tinyimagenet  # noqa: E402

SPEC = DeviceAugmentSpec(pad=1, hflip=False, mean=(0.5,), std=(0.25,))


def _sets(tmp_path, algorithm="fixmatch"):
    return build_ssl_datasets("digits", None, 20, 0, tmp_path, algorithm=algorithm)[0]


def test_streams_sample_what_the_loader_samples(tmp_path):
    dsets = _sets(tmp_path)
    ulb = dsets["train_ulb"]
    sampler = ResumableSampler(len(ulb), 64, seed=0, stream=1)
    stream = device_stream(ulb, sampler, 8, torch.device("cpu"))
    assert stream.keys == ["idx_ulb", "x_ulb_w", "x_ulb_s"] and len(stream) == 8
    positions = [int(i) for i, _ in ResumableSampler(len(ulb), 64, seed=0, stream=1)]
    batches = list(stream)
    assert torch.equal(torch.cat([b["idx_ulb"] for b in batches]), torch.tensor(positions))
    b = batches[0]
    assert b["x_ulb_w"].shape == (8, 1, 8, 8) and b["x_ulb_w"].dtype == torch.float32
    assert not torch.equal(b["x_ulb_w"], b["x_ulb_s"])      # two views, drawn apart
    # the same normalisation as the loader: an unaugmented image maps to the same tensor
    loader_view = dsets["eval"][0]["x_lb"]
    ev = DeviceBatches(dsets["eval"].data, dsets["eval"].targets, ["x_lb"], sampler, 1,
                       DeviceAugmentSpec(pad=0, hflip=False, mean=ulb.device_augment.mean,
                                         std=ulb.device_augment.std), torch.device("cpu"))
    np.testing.assert_allclose(ev.weak(ev.images[:1], None)[0].numpy(), loader_view.numpy(),
                               atol=1e-6)
    two = DeviceBatches(ulb.data, ulb.targets, ["idx_ulb", "x_ulb_w", "x_ulb_s_0", "x_ulb_s_1"],
                        sampler, 8, SPEC, torch.device("cpu"))   # CoMatch / SimMatch's views
    views = next(iter(two))
    assert not torch.equal(views["x_ulb_s_0"], views["x_ulb_s_1"])
    lb = device_stream(dsets["train_lb"], ResumableSampler(20, 16, 0, 0), 4, torch.device("cpu"))
    first = next(iter(lb))
    assert torch.equal(first["y_lb"], torch.as_tensor(dsets["train_lb"].targets)[first["idx_lb"]])


def test_a_batch_is_a_function_of_its_position(tmp_path):
    """Repeatable; a resumed epoch (sampler skip) gives the same later batches; processes
    draw apart."""
    ulb = _sets(tmp_path)["train_ulb"]

    def stream(rank=0, replicas=1):
        sampler = ResumableSampler(len(ulb), 64, seed=3, stream=1, num_replicas=replicas,
                                   rank=rank)
        return device_stream(ulb, sampler, 8 // replicas, torch.device("cpu"))

    a, b = list(stream()), list(stream())
    assert all(torch.equal(x["x_ulb_s"], y["x_ulb_s"]) for x, y in zip(a, b))
    resumed = stream()
    resumed.sampler.set_epoch(0, 3 * 8)                       # 3 batches in
    assert all(torch.equal(x["x_ulb_s"], y["x_ulb_s"]) for x, y in zip(a[3:], resumed))
    r0, r1 = next(iter(stream(0, 2))), next(iter(stream(1, 2)))
    assert not set(r0["idx_ulb"].tolist()) & set(r1["idx_ulb"].tolist())


def test_a_batch_copies_only_its_positions_to_the_device(tmp_path):
    """Views, labels and indices are made on the device: the one host-to-device copy of a
    batch is its positions (pinned and non-blocking on CUDA)."""
    ulb = _sets(tmp_path)["train_ulb"]
    stream = device_stream(ulb, ResumableSampler(len(ulb), 64, 0, 1), 8, torch.device("cpu"))
    items = list(ResumableSampler(len(ulb), 64, 0, 1))[:8]
    stream.strong.sync_free = True                 # the accelerator's path, on the CPU
    stream.batch(items)
    with OpLog() as log:
        batch = stream.batch(items)
    assert log.host_syncs == ["aten.lift_fresh"] and batch["x_ulb_s"].shape[0] == 8


def test_unknown_views_and_sets_without_a_device_path_are_refused(tmp_path):
    ulb = _sets(tmp_path)["train_ulb"]
    sampler = ResumableSampler(len(ulb), 8, 0, 1)
    with pytest.raises(ValueError, match="x_ulb_mix"):
        DeviceBatches(ulb.data, ulb.targets, ["x_ulb_mix"], sampler, 4, SPEC, torch.device("cpu"))
    resized = build_ssl_datasets("digits", None, 20, 0, tmp_path / "r", img_size=16)[0]
    with pytest.raises(ValueError, match="augment_on=loader"):
        device_stream(resized["train_ulb"], sampler, 4, torch.device("cpu"))
    with pytest.raises(ConfigError, match="augment_on"):
        validate({"algorithm": "fixmatch", "dataset": "digits", "augment_on": "gpu"})
    refused = {"imagenet": {}, "cifar10": {"auto_augment": "rand-m9-mstd0.5-inc1"},
               "cifar100": {"reprob": 0.25}, "tinyimagenet": {"img_size": 32}}
    for dataset, extra in refused.items():
        with pytest.raises(ConfigError, match=f"augment_on.*{next(iter(extra), 'Resized')}"):
            validate({"algorithm": "supervised_mixup", "dataset": dataset,
                          "augment_on": "device", **extra})
    with pytest.raises(ConfigError, match="augment_on.*fine-grained"):
        validate({"algorithm": "selftuning", "dataset": "cub200", "label_percent": 15,
                      "augment_on": "device"})
    for dataset in ("digits", "cifar10", "tinyimagenet"):
        assert validate({"algorithm": "supervised_mixup", "dataset": dataset,
                             "augment_on": "device"})["augment_on"] == "device"


def _loader_outcomes(img: np.ndarray, pad: int, mean, std) -> list:
    """Every image torchvision's RandomCrop(s, padding=pad) + flip + normalise can make."""
    pil, s = Image.fromarray(img), img.shape[0]
    padded = TF.pad(pil, pad)                    # fill 0: the supervised recipe's black border
    out = []
    for i in range(2 * pad + 1):
        for j in range(2 * pad + 1):
            window = TF.crop(padded, i, j, s, s)
            for view in (window, TF.hflip(window)):
                out.append(TF.normalize(TF.to_tensor(view), list(mean), list(std)))
    return out


def test_supervised_views_are_the_recipes_crop_and_flip(tmp_path):
    """Each device view of a supervised CIFAR set is one of the images the loader's
    RandomCrop(32, padding=4) + flip could make of that sample (black padding, not USB's
    reflection), and the crops vary."""
    root = tmp_path / "data"
    write_cifar10(root, per_batch=20)
    train = build_supervised_datasets("cifar10", root, None)[0]["train"]
    spec = train.device_augment
    assert (spec.padding_mode, spec.pad, spec.hflip, spec.size) == ("constant", 4, True, 32)
    sampler = ResumableSampler(len(train), 64, seed=0, stream=0)
    stream = device_stream(SeededDataset(train), sampler, 16, torch.device("cpu"))
    batch = next(iter(stream))
    assert stream.keys == ["idx_lb", "x_lb", "y_lb"]
    assert torch.equal(batch["y_lb"], torch.as_tensor(train.targets)[batch["idx_lb"]])
    for view, i in zip(batch["x_lb"][:6], batch["idx_lb"][:6]):
        outcomes = _loader_outcomes(train.data[int(i)], 4, spec.mean, spec.std)
        assert min(float((view - o).abs().max()) for o in outcomes) < 1e-5
    black = (torch.zeros(3) - torch.tensor(spec.mean)) / torch.tensor(spec.std)
    borders = (batch["x_lb"] - black.view(1, 3, 1, 1)).abs().amax(1) < 1e-5
    assert borders.any() and not borders.all()   # black padding in some crops' borders


def test_tinyimagenet_on_the_device_is_decoded_once(tmp_path):
    """The JPEGs are decoded once per dataset and device (grey files as RGB, as the loader
    opens them) and shared by both of semilearn's streams; an image of another size is
    refused naming it."""
    root = tmp_path / "data"
    files = write_tinyimagenet(root, per_class=3, val_per_class=1)
    grey = files["train"][1][0]
    Image.open(grey).convert("L").save(grey, "JPEG")           # the real set has grey JPEGs
    train = build_supervised_datasets("tinyimagenet", root, None)[0]["train"]
    sampler = ResumableSampler(len(train), 9, seed=0, stream=0)
    a = device_stream(train, sampler, 3, torch.device("cpu"))
    b = device_stream(train, sampler, 3, torch.device("cpu"))
    assert a.images.data_ptr() == b.images.data_ptr() and a.images.shape == (9, 3, 64, 64)
    for k in (0, 1, 8):
        want = np.asarray(load_rgb(train.data[k])).transpose(2, 0, 1)
        np.testing.assert_array_equal(a.images[k].numpy(), want)
    assert next(iter(a))["x_lb"].shape == (3, 3, 64, 64)
    big = files["train"][4][0]
    Image.new("RGB", (80, 64)).save(big, "JPEG")
    other = build_supervised_datasets("tinyimagenet", root, None)[0]["train"]
    with pytest.raises(DatasetError, match=f"{big.name} is 80x64, not 64x64.*augment_on=loader"):
        device_stream(other, sampler, 3, torch.device("cpu"))


@pytest.mark.slow
def test_supervised_training_on_the_device_from_the_cli(tmp_path, monkeypatch):
    """supervised_mixup's training stream is a DeviceBatches (plain and repeated_aug), the
    run trains, and evaluating it copies no training image to the device."""
    cfg = {"algorithm": "supervised_mixup", "dataset": "digits", "in_channels": 1,
           "net": "small_cnn", "num_train_iter": 4, "epoch": 1, "num_eval_iter": 2,
           "batch_size": 8, "eval_batch_size": 64, "num_workers": 0, "progress": False,
           "device": "cpu", "augment_on": "device", "mix_mixers": "cutmix",
           "save_dir": str(tmp_path)}
    for i, extra in enumerate(({}, {"repeated_aug": 2})):
        alg, _, _ = prepare_run(validate({**cfg, **extra, "save_name": f"r{i}"}))
        stream = alg.loader_dict["train_lb"]
        assert isinstance(stream, DeviceBatches) and stream.weak.padding_mode == "constant"
        assert len(stream) == 4 and next(iter(stream))["x_lb"].shape == (8, 1, 8, 8)
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({k: v for k, v in cfg.items() if k != "save_dir"}))
    assert cli.main(["train", "--config", str(path), "--save-dir", str(tmp_path / "a")]) == 0
    run = tmp_path / "a" / "supervised_mixup_digits"
    results = json.loads((run / "results.json").read_text())
    assert results["status"] == "finished" and results["iterations"] == 4
    import dm_ssl.data.device_data as dd

    monkeypatch.setattr(dd, "device_images", lambda *a: pytest.fail("eval copied the set"))
    assert evaluate(str(run / "latest_model.pth"))["top1"] == pytest.approx(
        results["final_acc"])


@pytest.mark.slow
@pytest.mark.parametrize("alg", ["fixmatch_dm", "flexmatch", "softmatch_dm"])
def test_training_on_the_device_from_the_cli(tmp_path, capsys, alg):
    """Hosts and DM algorithms read the device batches unchanged; exact resume is in
    tests/test_exact_resume.py (fixmatch_dm_device)."""
    cfg = tmp_path / "c.yaml"
    base = {"algorithm": alg, "dataset": "digits", "num_labels": 20, "in_channels": 1,
            "net": "small_cnn", "num_train_iter": 4, "epoch": 1, "num_eval_iter": 2,
            "batch_size": 4, "uratio": 2, "eval_batch_size": 32, "num_workers": 0,
            "progress": False, "device": "cpu", "augment_on": "device"}
    cfg.write_text(yaml.safe_dump(base))
    assert cli.main(["train", "--config", str(cfg), "--save-dir", str(tmp_path / "a")]) == 0, \
        capsys.readouterr().err[-2000:]
    results = json.loads((tmp_path / "a" / f"{alg}_digits" / "results.json").read_text())
    assert results["status"] == "finished" and results["iterations"] == 4


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_streams(tmp_path):
    ulb = _sets(tmp_path)["train_ulb"]

    def first():
        sampler = ResumableSampler(len(ulb), 64, seed=0, stream=1)
        return next(iter(device_stream(ulb, sampler, 16, torch.device("cuda"))))

    a, b = first(), first()
    assert a["x_ulb_s"].is_cuda and a["idx_ulb"].is_cuda
    stream = device_stream(ulb, ResumableSampler(len(ulb), 64, 0, 1), 16, torch.device("cuda"))
    items = list(ResumableSampler(len(ulb), 64, 0, 1))[:16]
    stream.batch(items)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")       # a batch is queued without a host sync
    try:
        queued = stream.batch(items)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert torch.equal(queued["x_ulb_s"], stream.batch(items)["x_ulb_s"])
    assert torch.equal(a["x_ulb_s"], b["x_ulb_s"]) and not torch.equal(a["x_ulb_w"], a["x_ulb_s"])
