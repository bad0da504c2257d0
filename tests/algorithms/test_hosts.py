import math

import pytest
import torch
from semilearn.core.utils import ALGORITHMS

from dm_ssl.algorithms import CheckpointError, WithMixHead
from dm_ssl.algorithms.dm_hosts import HOSTS


def _train_logs(alg):
    """Train and collect the log dict of every step."""
    logs = []
    real_step = alg.train_step

    def step(**batch):
        out, log = real_step(**batch)
        logs.append(dict(log))
        return out, log

    step.__signature__ = __import__("inspect").signature(real_step)
    alg.train_step = step
    alg.train()
    return logs


def test_registered_in_semilearn():
    for host in HOSTS:
        assert f"{host}_dm" in ALGORITHMS


def test_dm_weights_zero_is_exactly_the_host(build):
    # build then train each in turn: training draws from the global RNG (data order)
    host = build("fixmatch")
    logs_h = _train_logs(host)
    dm = build("fixmatch_dm", dm_w_ll=0.0, dm_w_lu=0.0)
    logs_d = _train_logs(dm)
    assert len(logs_h) == len(logs_d) == 3
    for a, b in zip(logs_h, logs_d):
        for key in ("train/sup_loss", "train/unsup_loss", "train/total_loss"):
            assert a[key] == b[key]
    sh, sd = host.model.state_dict(), dm.model.state_dict()
    assert sh.keys() == sd.keys()
    assert all(torch.equal(sh[k], sd[k]) for k in sh)
    # and DM on changes the weights (the comparison above can fail)
    on = build("fixmatch_dm")
    _train_logs(on)
    assert not all(torch.equal(sh[k], on.model.backbone.state_dict()[k]) for k in sh)


@pytest.mark.parametrize("name", [f"{h}_dm" for h in HOSTS])
def test_each_dm_algorithm_trains_on_cpu_and_logs_its_terms(build, name):
    alg = build(name, num_train_iter=2)
    logs = _train_logs(alg)
    last = logs[-1]
    for key in ("train/mix_ll_loss", "train/mix_lu_loss", "train/mix_mask_ratio", "train/w_lu",
                "train/util_ratio", "train/pl_acc"):
        assert key in last, key
    assert math.isfinite(last["train/total_loss"])
    assert last["train/w_lu"] == pytest.approx(0.5)       # ramp at t = 1 of T = 2
    assert logs[0]["train/w_lu"] == 0.0
    assert alg.dm_use_host_mask == HOSTS[name[:-3]]
    assert isinstance(alg.model, WithMixHead)


@pytest.mark.parametrize("overrides", [
    dict(dm_head="shared", dm_loss="mce"),
    dict(dm_mixer="cutmix", dm_mask="threshold", dm_p_mix_cutoff=0.5),
    dict(dm_mixer="manifoldmix"),
    dict(dm_mixer="puzzlemix"),                            # a dynamic mixer in L_ll and L_lu
    dict(dm_mixer="puzzlemix", dm_mixer_options={"block_nums": [2, 4], "transport": False}),
])
def test_options(build, overrides):
    alg = build("fixmatch_dm", num_train_iter=2, **overrides)
    logs = _train_logs(alg)
    assert math.isfinite(logs[-1]["train/total_loss"])
    assert isinstance(alg.model, WithMixHead) == (overrides.get("dm_head") != "shared")


def test_mixer_options_reach_both_mixers(build):
    alg = build("fixmatch_dm", dm_mixer="fmix", dm_mixer_options={"decay_power": 4.0})
    assert alg.dm.mixer_ll.decay_power == alg.dm.mixer_lu.decay_power == 4.0
    assert alg.dm.mixer_lu.bias_to_a and not alg.dm.mixer_ll.bias_to_a
    with pytest.raises(ValueError, match="dm_mixer_options.*fmix.*scope"):
        build("fixmatch_dm", dm_mixer="fmix", dm_mixer_options={"scope": [0.1, 0.8]})


def test_bad_dm_key_is_a_clear_error(build):
    with pytest.raises(ValueError, match="dm_mask"):
        build("fixmatch_dm", dm_mask="sometimes")
    with pytest.raises(ValueError, match="unknown mixer"):
        build("fixmatch_dm", dm_mixer="mixitup")
    with pytest.raises(ValueError, match="algorithm"):
        build("fixmatch_dmx")


def test_resume_restores_everything_and_refuses_partial_checkpoints(build, tmp_path):
    alg = build("flexmatch_dm", num_train_iter=2)
    _train_logs(alg)
    path = tmp_path / "flexmatch_dm" / "latest_model.pth"
    assert path.exists() and not list(tmp_path.glob("**/*.tmp"))
    fresh = build("flexmatch_dm", num_train_iter=2)
    fresh.load_model(str(path))
    assert fresh.it == alg.it + 1 or fresh.it == alg.it  # semilearn saves it + 1 mid-run
    for k, v in alg.model.state_dict().items():
        assert torch.equal(v, fresh.model.state_dict()[k])
    assert torch.equal(alg.dm.generator.get_state(), fresh.dm.generator.get_state())
    hook, fresh_hook = alg.hooks_dict["MaskingHook"], fresh.hooks_dict["MaskingHook"]
    assert torch.equal(hook.selected_label.cpu(), fresh_hook.selected_label.cpu())
    opt_a, opt_b = alg.optimizer.state_dict(), fresh.optimizer.state_dict()
    assert opt_a["state"].keys() == opt_b["state"].keys()

    ckpt = torch.load(path, weights_only=False)
    for key in ("optimizer", "dm_state", "selected_label", "scheduler"):
        partial = dict(ckpt)
        del partial[key]
        bad = tmp_path / f"no_{key}.pth"
        torch.save(partial, bad)
        with pytest.raises(CheckpointError, match=key):
            build("flexmatch_dm", num_train_iter=2).load_model(str(bad))
    # a host checkpoint cannot resume a DM run (no mix head, no DM state)
    host = build("flexmatch", num_train_iter=1)
    _train_logs(host)
    with pytest.raises(CheckpointError, match="dm_state"):
        build("flexmatch_dm").load_model(str(tmp_path / "flexmatch" / "latest_model.pth"))
    (tmp_path / "corrupt.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="corrupt.pth"):
        build("flexmatch_dm").load_model(str(tmp_path / "corrupt.pth"))
