import math

import pytest
import torch
from semilearn.core.utils import ALGORITHMS

from dm_ssl.algorithms import CheckpointError, WithMixing
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
    alg = build(name, num_train_iter=2, dm_w_ll=1.0)
    logs = _train_logs(alg)
    last = logs[-1]
    for key in ("train/mix_ll_loss", "train/mix_lu_loss", "train/mix_mask_ratio", "train/w_lu",
                "train/util_ratio", "train/pl_acc"):
        assert key in last, key
    assert math.isfinite(last["train/total_loss"])
    assert last["train/w_lu"] == pytest.approx(0.5)       # ramp at t = 1 of T = 2
    assert logs[0]["train/w_lu"] == 0.0
    assert alg.dm_use_host_mask == HOSTS[name[:-3]]
    assert isinstance(alg.model, WithMixing)


@pytest.mark.parametrize("overrides", [
    dict(dm_head="shared", dm_loss="mce"),
    dict(dm_mixer="cutmix", dm_mask="threshold", dm_p_mix_cutoff=0.5),
    dict(dm_mixer="manifoldmix"),
    dict(dm_mixer="puzzlemix"),                            # a dynamic mixer in L_ll and L_lu
    dict(dm_mixer="puzzlemix", dm_mixer_options={"block_nums": [2, 4], "transport": False}),
    dict(dm_loss="dm_bce", dm_mixer="cutmix"),             # the shared criterion builder
    dict(dm_loss="mbce", dm_mixer="samix", dm_mixer_options={"mask_layer": "block2"}),
    dict(dm_mixer="mixup,cutmix", dm_switch_prob=0.5, dm_alpha="1.0,0.5"),
])
def test_options(build, overrides):
    alg = build("fixmatch_dm", num_train_iter=2, **overrides)
    logs = _train_logs(alg)
    assert math.isfinite(logs[-1]["train/total_loss"])
    assert isinstance(alg.model, WithMixing) == (overrides.get("dm_head") != "shared")


def test_mixer_options_reach_both_mixers(build):
    alg = build("fixmatch_dm", dm_mixer="fmix", dm_mixer_options={"decay_power": 4.0})
    (mixer,) = alg.mixing.mixers  # one instance serves L_ll and L_lu (bias_to_a per call)
    assert mixer.decay_power == 4.0 and not mixer.bias_to_a
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


def _bn_buffers(model):
    return {k: v.clone() for k, v in model.state_dict().items()
            if k.endswith(("running_mean", "running_var", "num_batches_tracked"))}


@pytest.mark.parametrize("bn,forward,per_step", [
    ("update", "concat", 2), ("update", "separate", 3), ("freeze", "concat", 1),
    ("freeze", "separate", 1)])
def test_dm_bn_and_forward(build, bn, forward, per_step):
    """dm_bn=freeze: the DM forwards leave BN running statistics to the host's clean batch
    (fixmatch counts 1 batch per step); dm_forward=separate: L_ll and L_lu forward apart."""
    alg = build("fixmatch_dm", num_train_iter=2, dm_bn=bn, dm_forward=forward, dm_w_ll=1.0)
    calls = []
    handle = alg.model.backbone.register_forward_hook(
        lambda m, i, o: calls.append(len(i[0])) if m.training else None)  # not evaluation
    before = _bn_buffers(alg.model)
    _train_logs(alg)
    handle.remove()
    after = _bn_buffers(alg.model)
    tracked = [k for k in after if k.endswith("num_batches_tracked")]
    assert tracked and all(int(after[k] - before[k]) == 2 * per_step for k in tracked)
    n_l = 4  # batch_size of tiny_config; the host's forward holds 4 + 2 * 8 images
    dm_calls = [c for c in calls if c != n_l + 2 * 8]
    assert dm_calls == ([2 * n_l] if forward == "concat" else [n_l, n_l]) * 2
    for m in alg.model.modules():  # the switch is restored after every step
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            assert m.track_running_stats


def test_default_w_ll_0_skips_l_ll_entirely(build):
    alg = build("fixmatch_dm", num_train_iter=2)
    calls = []
    handle = alg.model.backbone.register_forward_hook(
        lambda m, i, o: calls.append(len(i[0])) if m.training else None)
    logs = _train_logs(alg)
    handle.remove()
    assert [c for c in calls if c != 4 + 2 * 8] == [4, 4]  # L_lu's forward only
    assert all("train/mix_ll_loss" not in lg and "train/mix_lu_loss" in lg for lg in logs)


def test_dm_bn_freeze_leaves_running_statistics_untouched(build):
    alg = build("fixmatch_dm", dm_bn="freeze", dm_w_ll=1.0)
    data = alg.dataset_dict
    x_lb = torch.stack([data["train_lb"][i]["x_lb"] for i in range(4)])
    x_ulb = torch.stack([data["train_ulb"][i]["x_ulb_w"] for i in range(8)])
    y_lb = torch.arange(4) % 4
    probs = torch.full((8, 4), 0.25)
    net = alg.model.backbone
    net.train()
    before = _bn_buffers(net)
    loss, _ = alg.dm(alg.mixing, net, x_lb, y_lb, x_ulb, probs, None, p_cutoff=0.95,
                     use_host_mask=False, it=5, total_it=10)
    loss.backward()
    after = _bn_buffers(net)
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in net.parameters())
    alg.dm.cfg.bn = "update"  # the same call in update mode does change them
    alg.dm(alg.mixing, net, x_lb, y_lb, x_ulb, probs, None, p_cutoff=0.95, use_host_mask=False,
           it=5, total_it=10)
    assert not all(torch.equal(after[k], v) for k, v in _bn_buffers(net).items())


def test_dm_ramp_bias_and_head_init_options(build):
    alg = build("fixmatch_dm", num_train_iter=2, dm_w_ll=1.0, dm_ramp_ll="cosine",
                dm_ramp_lu="none", dm_bias_ll=True, dm_head_init="normal")
    head = alg.model.mix_head
    assert torch.count_nonzero(head.bias) == 0
    assert head.weight.std().item() == pytest.approx(0.01, rel=0.2)
    assert alg.dm.cfg.bias_ll  # L_ll's call biases λ too
    lam = alg.mixing.mixers[0].resolve_lam(None, 64, generator=torch.Generator().manual_seed(0),
                                           device=torch.device("cpu"), bias_to_a=True)
    assert (lam >= 0.5).all() and lam.min() < 0.9
    logs = _train_logs(alg)
    assert [lg["train/w_ll"] for lg in logs] == [0.0, pytest.approx(0.5)]
    assert [lg["train/w_lu"] for lg in logs] == [1.0, 1.0]
    default = build("fixmatch_dm", num_train_iter=2)  # L_ll off by default (issue #11)
    assert [lg["train/w_ll"] for lg in _train_logs(default)] == [0.0, 0.0]
    full = build("fixmatch_dm", num_train_iter=2, dm_w_ll=1.0)  # the official: from step 0
    assert [lg["train/w_ll"] for lg in _train_logs(full)] == [1.0, 1.0]
    with pytest.raises(ValueError, match="dm_bn"):
        build("fixmatch_dm", dm_bn="frozen")
    with pytest.raises(ValueError, match="dm_forward"):
        build("fixmatch_dm", dm_forward="split")


def test_dm_pseudo_ema_takes_the_teachers_pseudo_labels(build, monkeypatch):
    import copy

    from dm_ssl.algorithms.dm_term import DecoupledMixupTerm

    alg = build("fixmatch_dm", dm_pseudo="ema", num_train_iter=4, ema_m=0.5)
    seen = []
    real_call = DecoupledMixupTerm.__call__

    def spy(self, mixing, net, x_lb, y_lb, x_ulb_w, probs_ulb_w, *args, **kwargs):
        n_l = y_lb.shape[0]
        with torch.no_grad():
            online = torch.softmax(net(x_ulb_w[:n_l])["logits"], -1)
        seen.append((x_ulb_w[:n_l].clone(), probs_ulb_w.detach().clone(), online,
                     copy.deepcopy(alg.ema_model)))
        return real_call(self, mixing, net, x_lb, y_lb, x_ulb_w, probs_ulb_w, *args, **kwargs)

    monkeypatch.setattr(DecoupledMixupTerm, "__call__", spy)
    _train_logs(alg)
    assert len(seen) == 4
    for x, probs, _online, teacher in seen:
        teacher.train()  # batch statistics, as the official encoder_k
        with torch.no_grad():
            expected = torch.softmax(teacher(x)["logits"], -1)
        assert probs.shape[0] == x.shape[0]
        torch.testing.assert_close(probs, expected)
        assert torch.equal(probs.argmax(-1), expected.argmax(-1))
    # from the second step the teacher is not the online model, so the test can fail
    assert not torch.allclose(seen[-1][1], seen[-1][2], atol=1e-4)
    # the teacher's forward left its BN running statistics alone
    ema = alg.ema_model
    before = _bn_buffers(ema)
    alg.ema_pseudo_probs(seen[-1][0])
    assert all(torch.equal(before[k], v) for k, v in _bn_buffers(ema).items())
    with pytest.raises(ValueError, match="dm_pseudo"):
        build("fixmatch_dm", dm_pseudo="teacher")


def test_resume_mid_epoch_trains_the_remaining_iterations(build, tmp_path):
    """issue #14: semilearn stores epoch + 1 even mid-epoch; resuming at 4 of 8 with one epoch
    used to train nothing and report success."""
    first = build("fixmatch_dm", num_train_iter=4, epoch=1)
    _train_logs(first)
    again = build("fixmatch_dm", num_train_iter=8, epoch=1, save_name="resumed")
    again.load_model(str(tmp_path / "fixmatch_dm" / "latest_model.pth"))
    assert again.it == 4 and again.start_epoch == 0
    logs = _train_logs(again)
    assert again.it == 8 and len(logs) == 4
