import math

import pytest
import torch

from .test_hosts import _train_logs

LOSSES = ["mce", "dm_ce", "mbce", "dm_bce"]
MIXERS = ["mixup", "cutmix", "manifoldmix", "saliencymix", "fmix", "resizemix"]


@pytest.fixture
def build_sup(build):
    def _build(**kw):
        return build("supervised_mixup", net="small_cnn", **kw)
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
