"""AutoMix / SAMix through the one mixing pipeline: supervised mixup and the SSL DM term."""

import math

import pytest
import torch

from dm_ssl.algorithms import WithMixing
from dm_ssl.mixers import AutoMix, momentum_at

from .test_hosts import _train_logs

LOSSES = ["mce", "dm_ce", "mbce", "dm_bce"]


@pytest.fixture
def build_sup(build):
    def _build(**kw):
        return build("supervised_mixup", **{"net": "small_cnn", **kw})
    return _build


def _mixer(alg) -> AutoMix:
    (mixer,) = [m for m in alg.mixing.mixers if m.learned]
    return mixer


@pytest.mark.parametrize("mixer", ["automix", "samix"])
@pytest.mark.parametrize("loss", LOSSES)
def test_learned_mixers_train_with_every_loss(build_sup, mixer, loss):
    alg = build_sup(mix_mixers=mixer, mix_loss=loss, num_train_iter=2)
    assert isinstance(alg.model, WithMixing) and alg.mixing is alg.model.mixing
    logs = _train_logs(alg)
    assert len(logs) == 2 and all(math.isfinite(lg["train/sup_loss"]) for lg in logs)
    assert "train/mixblock_loss" in logs[-1] and "train/mixblock_mask_loss" in logs[-1]


def test_the_model_owns_the_mixer_optimizer_ema_and_a_step_trains_the_block(build_sup):
    alg = build_sup(mix_mixers="automix", mix_clean_weight=1.0, mix_head="separate",
                    num_train_iter=3)
    m = _mixer(alg)
    in_opt = {id(p) for g in alg.optimizer.param_groups for p in g["params"]}
    assert all(id(p) in in_opt for p in m.block.parameters())
    assert not any(id(p) in in_opt for p in m.encoder.parameters())   # frozen: not trained
    assert all(id(p) in in_opt for p in alg.model.mix_head.parameters())
    ema_keys = set(alg.ema_model.state_dict())
    assert any(k.startswith("mixing.mixers.0.block.") for k in ema_keys)
    block0 = [p.detach().clone() for p in m.block.parameters()]
    k0 = [p.detach().clone() for p in m.encoder.parameters()]
    logs = _train_logs(alg)
    assert "train/clean_loss" in logs[-1]
    assert any(not torch.equal(a, b) for a, b in zip(block0, m.block.parameters()))
    assert int(m.updated_to) == 2     # steps 0 and 1 applied before steps 1 and 2
    assert any(not torch.equal(a, b) for a, b in zip(k0, m.encoder.parameters()))
    assert momentum_at(0, 3) == 0.999


def test_block_lr_mult_gives_the_mix_block_its_own_group(build_sup):
    alg = build_sup(mix_mixers="samix", mix_block_lr_mult=0.1, lr=0.2, num_train_iter=4)
    groups = [g for g in alg.optimizer.param_groups if g.get("name") == "mix_block"]
    block = {id(p) for p in _mixer(alg).block.parameters()}
    assert groups and {id(p) for g in groups for p in g["params"]} == block
    assert all(g["lr"] == pytest.approx(0.02) for g in groups)
    rest = [g for g in alg.optimizer.param_groups if g.get("name") != "mix_block"]
    assert all(g["lr"] == pytest.approx(0.2) for g in rest)


def test_resume_restores_block_encoder_optimizer_and_generator(build_sup, tmp_path):
    a = build_sup(mix_mixers="automix", mix_loss="dm_ce", num_train_iter=2)
    _train_logs(a)                     # saves latest_model.pth at the end
    b = build_sup(mix_mixers="automix", mix_loss="dm_ce", num_train_iter=2)
    b.load_model(str(tmp_path / "supervised_mixup" / "latest_model.pth"))
    b.it = a.it
    assert len(a.optimizer.param_groups) == len(b.optimizer.param_groups)
    for alg in (a, b):
        alg.model.train()
    x = torch.rand(4, 3, 16, 16, generator=torch.Generator().manual_seed(3))
    y = torch.arange(4) % 4
    out_a, _ = a.train_step(x_lb=x, y_lb=y)
    out_b, _ = b.train_step(x_lb=x, y_lb=y)
    assert torch.equal(out_a["loss"], out_b["loss"])   # same next-step loss, bit for bit
    assert int(_mixer(a).updated_to) == int(_mixer(b).updated_to)


@pytest.mark.parametrize("mixer", ["automix", "samix"])
def test_ssl_dm_term_with_a_learned_mixer(build, mixer):
    alg = build("fixmatch_dm", dm_mixer=mixer, dm_w_ll=1.0, num_train_iter=2,
                dm_mixer_options={"mask_layer": "block2"})
    assert isinstance(alg.model, WithMixing)
    logs = _train_logs(alg)
    last = logs[-1]
    assert math.isfinite(last["train/total_loss"])
    assert "train/lu_mixblock_loss" in last and "train/ll_mixblock_loss" in last
    assert int(_mixer(alg).updated_to) == 1


def test_all_dm_weights_zero_is_still_exactly_the_host(build):
    # build then train each in turn: training draws from the global RNG (data order)
    host = build("fixmatch", num_train_iter=2)
    lh = _train_logs(host)
    off = build("fixmatch_dm", dm_mixer="automix", dm_w_ll=0.0, dm_w_lu=0.0, num_train_iter=2)
    assert not isinstance(off.model, WithMixing) and off.mixing is None
    lo = _train_logs(off)
    assert [lg["train/total_loss"] for lg in lh] == [lg["train/total_loss"] for lg in lo]
    sd_h, sd_o = host.model.state_dict(), off.model.state_dict()
    assert sd_h.keys() == sd_o.keys() and all(torch.equal(sd_h[k], sd_o[k]) for k in sd_h)


def test_a_net_without_a_feature_map_is_a_clear_error(build_sup):
    with pytest.raises(ValueError, match="mix_options of automix: mask_layer"):
        build_sup(mix_mixers="automix", mix_options={"mask_layer": "classifier"})
