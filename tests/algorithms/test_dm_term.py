import math

import pytest
import torch

from dm_ssl.algorithms.dm_term import DMConfig, cosine_ramp, mix_threshold_mask
from dm_ssl.algorithms.mixing import MixSpec, schema_arguments


def test_cosine_ramp_is_a_true_ramp_over_the_whole_run():
    total = 1000
    values = [cosine_ramp(t, total) for t in range(total + 1)]
    assert values[0] == 0.0 and values[-1] == pytest.approx(1.0)
    assert values[total // 2] == pytest.approx(0.5)
    assert all(b >= a for a, b in zip(values, values[1:]))
    # not compounded (spec §8.3): a quarter of the way it is (1 − cos(π/4))/2, not ~1
    assert values[total // 4] == pytest.approx(0.5 * (1 - math.cos(math.pi / 4)))
    assert cosine_ramp(2 * total, total) == pytest.approx(1.0)


def test_mix_threshold_mask():
    max_prob = torch.tensor([0.96, 0.94, 0.80, 0.60, 0.59])
    lam = torch.tensor([0.5, 0.5, 0.6, 0.6, 0.6])  # labeled share (biased, ≥ 0.5)
    # default p_mix_cutoff = p_cutoff: τ = p_cutoff
    assert mix_threshold_mask(max_prob, lam, 0.95, 0.95).tolist() == [1, 0, 0, 0, 0]
    # a low p_mix_cutoff: τ = max(p_mix, 1 − λ) = 0.6 for λ = 0.4... here 1 − λ = 0.4 < 0.5
    assert mix_threshold_mask(max_prob, lam, 0.95, 0.5).tolist() == [1, 1, 1, 1, 1]
    assert mix_threshold_mask(max_prob, torch.full((5,), 0.55), 0.95, 0.3).tolist() == \
        [1, 1, 1, 1, 1]
    assert mix_threshold_mask(max_prob, torch.full((5,), 0.3), 0.95, 0.1).tolist() == \
        [1, 1, 1, 0, 0]


@pytest.mark.parametrize("kw,name", [
    (dict(w_ll=-1.0), "dm_w_ll"), (dict(mask="x"), "dm_mask"), (dict(p_mix_cutoff=2.0),
                                                                 "dm_p_mix_cutoff"),
])
def test_config_errors_name_the_key(kw, name):
    with pytest.raises(ValueError, match=name):
        DMConfig(**kw)


@pytest.mark.parametrize("kw,name", [
    (dict(eta=-0.5), "dm_eta"), (dict(head="x"), "dm_head"), (dict(loss="bce"), "dm_loss"),
    (dict(alpha="1,2"), "dm_alpha"), (dict(mixer=""), "dm_mixer"),
])
def test_mix_spec_errors_name_the_setting_key(kw, name):
    with pytest.raises(ValueError, match=name):
        MixSpec.for_setting("dm", **kw)
    supervised = {"dm_head": "mix_head", "dm_mixer": "mix_mixers"}.get(name, "mix_" + name[3:])
    with pytest.raises(ValueError, match=supervised):
        MixSpec.for_setting("mix", **kw)


def test_defaults_are_the_official_ones_but_w_ll():
    cfg = DMConfig()
    m = cfg.mix
    assert (cfg.w_lu, m.mixers, m.alphas, m.eta, m.mode, m.scale, m.t, m.k, m.head) == (
        1.0, ["mixup"], [None], 1.0, "both", "pow", 1.0, 1.0, "separate")
    assert cfg.w_ll == 0.0 and cfg.enabled  # L_ll off by default (issue #11), L_lu on
    assert DMConfig(w_ll=0, w_lu=0).enabled is False


def test_one_schema_with_the_per_setting_defaults():
    ssl, sup = MixSpec.for_setting("dm"), MixSpec.for_setting("mix")
    assert (ssl.eta, ssl.scale, ssl.head) == (1.0, "pow", "separate")
    assert (sup.eta, sup.scale, sup.head) == (0.1, "none", "shared")
    same = [f for f in ("mixer", "alpha", "loss", "mode", "thr", "t", "k", "xi", "bce_mode",
                        "label_smoothing", "switch_prob", "block_lr_mult")]
    assert all(getattr(ssl, f) == getattr(sup, f) for f in same)
    keys_dm = [k for k, *_ in schema_arguments("dm")]
    keys_mix = [k for k, *_ in schema_arguments("mix")]
    assert len(keys_dm) == len(keys_mix) and "dm_mixer_options" in keys_dm
    assert "mix_mixers" in keys_mix and "mix_options" in keys_mix  # their first names


def test_mixer_options_flat_or_keyed_by_mixer():
    one = MixSpec.for_setting("mix", mixer="fmix", mixer_options={"decay_power": 4.0})
    two = MixSpec.for_setting("mix", mixer="mixup,fmix", mixer_options={"fmix": {"decay_power": 4}})
    assert one.options == {"fmix": {"decay_power": 4.0}}
    assert two.options == {"mixup": {}, "fmix": {"decay_power": 4}}
    with pytest.raises(ValueError, match="mix_options.*key the options by mixer"):
        MixSpec.for_setting("mix", mixer="mixup,fmix", mixer_options={"decay_power": 4.0})
    with pytest.raises(ValueError, match="mix_options: cutmix not in mix_mixers"):
        MixSpec.for_setting("mix", mixer="mixup", mixer_options={"cutmix": {}})
