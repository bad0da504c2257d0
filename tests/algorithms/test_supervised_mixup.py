import math

import pytest
import torch

from .test_hosts import _bn_buffers, _train_logs

LOSSES = ["mce", "dm_ce", "mbce", "dm_bce"]
MIXERS = ["mixup", "cutmix", "manifoldmix", "saliencymix", "fmix", "resizemix", "puzzlemix"]


@pytest.fixture
def build_sup(build):
    def _build(**kw):
        return build("supervised_mixup", **{"net": "small_cnn", **kw})
    return _build


@pytest.mark.parametrize("mixer", MIXERS)
@pytest.mark.parametrize("loss", LOSSES)
def test_every_mixer_and_loss_trains_on_cpu(build_sup, mixer, loss):
    alg = build_sup(mix_mixers=mixer, mix_loss=loss, num_train_iter=2)
    logs = _train_logs(alg)
    assert len(logs) == 2                                  # exactly num_train_iter steps
    assert all(math.isfinite(log["train/sup_loss"]) for log in logs)
    assert logs[-1]["train/mixed"] == 1.0


def test_mixer_switching_and_unmixed_batches(build_sup):
    alg = build_sup(mix_mixers="mixup,cutmix", mix_alpha="0.8,1.0", mix_switch_prob=0.5,
                    num_train_iter=6)
    assert [m.name for m in alg.mixers] == ["mixup", "cutmix"]
    assert [m.alpha for m in alg.mixers] == [0.8, 1.0]
    chosen = []

    def spy(mixer):
        real = mixer.mix_batch

        def mix_batch(*args, **kwargs):
            chosen.append(mixer.name)
            return real(*args, **kwargs)
        mixer.mix_batch = mix_batch

    for m in alg.mixers:
        spy(m)
    _train_logs(alg)
    assert set(chosen) == {"mixup", "cutmix"}              # both used over 6 seeded steps
    plain = build_sup(mix_prob=0.0, num_train_iter=2)
    assert all(log["train/mixed"] == 0.0 for log in _train_logs(plain))


def test_mixing_is_reproducible_and_resumes(build_sup, tmp_path):
    a = build_sup(num_train_iter=2)
    _train_logs(a)
    b = build_sup(num_train_iter=2)
    b.load_model(str(tmp_path / "supervised_mixup" / "latest_model.pth"))
    assert torch.equal(a.mix_generator.get_state(), b.mix_generator.get_state())


def test_bad_keys_name_themselves(build_sup):
    with pytest.raises(ValueError, match="mix_loss"):
        build_sup(mix_loss="focal")
    with pytest.raises(ValueError, match="mix_alpha"):
        build_sup(mix_mixers="mixup,cutmix", mix_alpha="1,1,1")
    with pytest.raises(ValueError, match="mix_mixers.*unknown mixer"):
        build_sup(mix_mixers="puzzle")


def test_learning_rate_follows_a_full_cosine(build_sup):
    alg = build_sup(num_train_iter=10, lr=0.1)
    lrs = []
    for _ in range(10):
        lrs.append(alg.optimizer.param_groups[0]["lr"])
        alg.optimizer.step()
        alg.scheduler.step()
    assert lrs[0] == pytest.approx(0.1)
    assert lrs[5] == pytest.approx(0.05)                    # ½(1 + cos(π/2)) = ½
    assert alg.optimizer.param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-12)


# -- ImageNet recipes: timm optimizers, warm-up + cosine to min_lr, repeated augmentation ----


def test_timm_optimizer_by_name_without_decay_on_biases(build_sup):
    from timm.optim import Lamb

    alg = build_sup(optim="lamb", lr=8e-3, weight_decay=0.02, num_train_iter=2)
    assert isinstance(alg.optimizer, Lamb)
    decay = {id(p): g["weight_decay"] for g in alg.optimizer.param_groups for p in g["params"]}
    for p in alg.model.parameters():                       # biases / norms: no weight decay
        assert decay[id(p)] == (0.0 if p.ndim <= 1 else 0.02)
    before = [p.detach().clone() for p in alg.model.parameters()]
    logs = _train_logs(alg)
    assert all(math.isfinite(log["train/sup_loss"]) for log in logs)
    assert any(not torch.equal(a, b) for a, b in zip(before, alg.model.parameters()))
    assert type(build_sup(optim="SGD").optimizer) is torch.optim.SGD   # semilearn's, as USB
    with pytest.raises(ValueError, match="optim 'lamz'"):
        build_sup(optim="lamz")
    with pytest.raises(ValueError, match="layer_decay"):
        build_sup(optim="lamb", layer_decay=0.75)


def test_warmup_from_warmup_lr_then_cosine_to_min_lr(build_sup):
    alg = build_sup(optim="adamw", num_train_iter=12, num_warmup_iter=2, lr=1e-3,
                    warmup_lr=1e-4, min_lr=1e-5)
    lrs = []
    for _ in range(12):
        lrs.append(alg.optimizer.param_groups[0]["lr"])
        alg.optimizer.step()
        alg.scheduler.step()
    assert lrs[0] == pytest.approx(1e-4 + (1e-3 - 1e-4) / 2)   # halfway up the warm-up
    assert lrs[1] == pytest.approx(1e-3)
    assert lrs[2] == pytest.approx(1e-3)                      # cosine starts at lr
    assert lrs[7] == pytest.approx(1e-5 + (1e-3 - 1e-5) / 2)  # t = T/2
    assert alg.optimizer.param_groups[0]["lr"] == pytest.approx(1e-5)
    assert all(a >= b for a, b in zip(lrs[1:], lrs[2:]))
    with pytest.raises(ValueError, match="min_lr"):
        build_sup(lr=0.1, min_lr=0.2)


def test_repeated_augmentation_repeats_images_and_keeps_the_epoch_length(build_sup):
    from dm_ssl.data.sampling import ResumableSampler

    alg = build_sup(repeated_aug=3, num_train_iter=6, epoch=2, batch_size=6)
    loader = alg.loader_dict["train_lb"]
    assert isinstance(loader.sampler, ResumableSampler) and len(loader) == 3

    def epoch(e):
        loader.sampler.set_epoch(e)
        return [b["idx_lb"].tolist() for b in loader]

    first = epoch(0)
    assert len(first) == 3                                 # num_train_iter // epoch batches
    for batch in first:                                    # each image comes three times
        assert sorted(batch.count(i) for i in set(batch)) == [3, 3]
    assert first == epoch(0) and first != epoch(1)         # seeded by (seed, epoch)
    logs = _train_logs(alg)
    assert len(logs) == 6
    with pytest.raises(ValueError, match="repeated_aug"):
        build_sup(repeated_aug=0)


def test_bce_target_threshold_reaches_the_loss(build_sup):
    alg = build_sup(mix_loss="mbce", mix_bce_threshold=0.2, mix_bce_class_reduction="mean")
    assert alg.criterion.target_threshold == 0.2 and alg.criterion.class_reduction == "mean"
    assert build_sup(mix_loss="dm_bce", mix_bce_threshold=0.2).criterion.target_threshold == 0.2
    with pytest.raises(ValueError, match="mix_loss 'mbce'.*target_threshold"):
        build_sup(mix_loss="mbce", mix_bce_threshold=1.5)


def test_net_options_reach_the_net(build_sup):
    alg = build_sup(net="timm/test_resnet", net_options={"drop_path_rate": 0.1})
    assert any(type(m).__name__ == "DropPath" for m in alg.model.modules())
    with pytest.raises(ValueError, match="net_options"):
        build_sup(net_options={"drop_path_rate": 0.1})     # small_cnn has no drop path


def test_mixer_options_reach_the_mixers(build_sup):
    alg = build_sup(mix_mixers="puzzlemix,fmix", mix_alpha="1.0",
                    mix_options={"puzzlemix": {"block_nums": [2, 4], "transport": False},
                                 "fmix": {"decay_power": 4.0}})
    assert alg.mixers[0].block_nums == (2, 4) and alg.mixers[0].transport is False
    assert alg.mixers[1].decay_power == 4.0
    with pytest.raises(ValueError, match="mix_options: cutmix not in mix_mixers"):
        build_sup(mix_mixers="mixup", mix_options={"cutmix": {}})
    with pytest.raises(ValueError, match="mix_options.*puzzlemix.*beta"):
        build_sup(mix_mixers="puzzlemix", mix_options={"puzzlemix": {"beta": -1}})
    with pytest.raises(ValueError, match="mix_options.*block_nums"):  # flat: the one mixer's
        build_sup(mix_options={"block_nums": 2})


@pytest.mark.parametrize("mixer", ["mixup", "manifoldmix"])
def test_mix_bn_freeze_takes_running_statistics_from_the_clean_batch(build_sup, mixer):
    import copy

    alg = build_sup(mix_mixers=mixer, mix_bn="freeze")
    data = alg.dataset_dict["train_lb"]
    x = torch.stack([data[i]["x_lb"] for i in range(8)])
    y = torch.tensor([data[i]["y_lb"] for i in range(8)])
    alg.model.train()
    clean = copy.deepcopy(alg.model)
    with torch.no_grad():
        clean(x)
    alg.train_step(x_lb=x, y_lb=y)

    want, got = _bn_buffers(clean), _bn_buffers(alg.model)
    assert want and all(torch.equal(want[k], got[k]) for k in want)
    update = build_sup(mix_mixers=mixer)
    update.model.train()
    update.train_step(x_lb=x, y_lb=y)  # the same draws and weights, the mixed batch counted
    assert not all(torch.equal(want[k], v) for k, v in _bn_buffers(update.model).items())
    with pytest.raises(ValueError, match="mix_bn"):
        build_sup(mix_bn="clean")
