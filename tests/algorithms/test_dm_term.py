import math

import pytest
import torch

from dm_ssl.algorithms.dm_term import DMConfig, cosine_ramp, mix_threshold_mask


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
    (dict(w_ll=-1.0), "dm_w_ll"), (dict(eta=-0.5), "dm_eta"), (dict(mask="x"), "dm_mask"),
    (dict(head="x"), "dm_head"), (dict(loss="bce"), "dm_loss"), (dict(p_mix_cutoff=2.0),
                                                                 "dm_p_mix_cutoff"),
])
def test_config_errors_name_the_key(kw, name):
    with pytest.raises(ValueError, match=name):
        DMConfig(**kw)


def test_defaults_are_the_official_ones_but_w_ll():
    cfg = DMConfig()
    assert (cfg.w_lu, cfg.mixer, cfg.alpha, cfg.eta, cfg.mode, cfg.scale, cfg.t,
            cfg.k) == (1.0, "mixup", 1.0, 1.0, "both", "pow", 1.0, 1.0)
    assert cfg.w_ll == 0.0 and cfg.enabled  # L_ll off by default (issue #11), L_lu on
    assert DMConfig(w_ll=0, w_lu=0).enabled is False
