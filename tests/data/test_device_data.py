"""augment_on=device: the training streams on the device, sampled as the loader path does."""

import json

import numpy as np
import pytest
import torch
import yaml

pytest.importorskip("semilearn")

from dm_ssl import cli  # noqa: E402
from dm_ssl.data import build_ssl_datasets  # noqa: E402
from dm_ssl.data.device_data import DeviceAugmentSpec, DeviceBatches, device_stream  # noqa: E402
from dm_ssl.data.op_log import OpLog  # noqa: E402
from dm_ssl.data.sampling import ResumableSampler  # noqa: E402

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
    with pytest.raises(cli.ConfigError, match="augment_on"):
        cli.validate({"algorithm": "fixmatch", "dataset": "digits", "augment_on": "gpu"})
    with pytest.raises(cli.ConfigError, match="augment_on"):
        cli.validate({"algorithm": "supervised_mixup", "dataset": "digits",
                      "augment_on": "device"})


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
