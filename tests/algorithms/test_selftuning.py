import math

import pytest
import torch

from dm_ssl.algorithms import SelfTuningNet, WithMixing

from .test_hosts import _train_logs


def test_selftuning_trains_and_fills_its_queues(build, monkeypatch):
    import dm_ssl.algorithms.selftuning as st

    seen = []
    real = st.enqueue
    monkeypatch.setattr(st, "enqueue",
                        lambda q, p, k, y: (seen.append(y.clone()), real(q, p, k, y)))
    alg = build("selftuning", net="small_cnn", st_queue_size=4, st_proj_dim=16)
    net = alg.st_net
    assert isinstance(net, SelfTuningNet) and net.queue.shape == (16, 4 * 4)
    before = net.queue.clone()
    logs = _train_logs(alg)
    last = logs[-1]
    for key in ("train/sup_loss", "train/pgc_lb_loss", "train/pgc_ulb_loss", "train/pl_acc"):
        assert key in last and math.isfinite(last[key])
    assert last["train/util_ratio"] == 1.0            # argmax pseudo-labels, no threshold
    # 3 steps of 4 labeled + 8 unlabeled keys were written
    assert not torch.equal(before, net.queue)
    labels = torch.cat(seen)
    assert len(seen) == 3 and labels.numel() == 3 * (4 + 8)   # 4 labeled + 8 unlabeled keys
    assert net.queue_ptr.tolist() == (torch.bincount(labels, minlength=4) % 4).tolist()
    assert torch.allclose(net.queue.norm(dim=0), torch.ones(16), atol=1e-5)
    # key encoder is a momentum copy: close to, but not equal to, the query encoder
    q = dict(net.backbone.named_parameters())
    k = dict(net.backbone_k.named_parameters())
    assert all(not p.requires_grad for p in k.values())
    assert any(not torch.equal(q[n], k[n]) for n in q)
    # classifier head at 10x the backbone's learning rate
    lrs = sorted(g["initial_lr"] for g in alg.optimizer.param_groups)
    assert lrs[1] == 10 * lrs[0]


def test_queue_state_resumes(build, tmp_path):
    alg = build("selftuning", net="small_cnn", st_queue_size=4, st_proj_dim=16,
                num_train_iter=2)
    _train_logs(alg)
    fresh = build("selftuning", net="small_cnn", st_queue_size=4, st_proj_dim=16,
                  num_train_iter=2)
    assert not torch.equal(fresh.st_net.queue, alg.st_net.queue)
    fresh.load_model(str(tmp_path / "selftuning" / "latest_model.pth"))
    assert torch.equal(fresh.st_net.queue, alg.st_net.queue)
    assert torch.equal(fresh.st_net.queue_ptr, alg.st_net.queue_ptr)
    for (n, a), (_, b) in zip(alg.st_net.backbone_k.state_dict().items(),
                              fresh.st_net.backbone_k.state_dict().items()):
        assert torch.equal(a, b), n


def test_selftuning_dm_reuses_the_dm_term(build):
    alg = build("selftuning_dm", net="small_cnn", st_queue_size=4, st_proj_dim=16,
                dm_mask="threshold", p_cutoff=0.0, dm_w_ll=1.0)
    assert isinstance(alg.model, WithMixing) and isinstance(alg.model.backbone, SelfTuningNet)
    logs = _train_logs(alg)
    last = logs[-1]
    for key in ("train/pgc_ulb_loss", "train/mix_ll_loss", "train/mix_lu_loss", "train/w_lu"):
        assert key in last
    assert last["train/mix_mask_ratio"] == 1.0       # p_cutoff = 0 keeps every L_lu row
    assert math.isfinite(last["train/total_loss"])


def test_official_multistep_schedule_and_classifier_init(build):
    alg = build("selftuning", net="small_cnn", st_queue_size=4, st_proj_dim=16,
                num_train_iter=6, lr=0.01, st_lr_schedule="multistep",
                st_lr_milestones=[2, 4], st_lr_gamma=0.1, st_classifier_init="normal")
    head = alg.st_net.backbone.classifier
    assert torch.count_nonzero(head.bias) == 0
    assert abs(head.weight.std().item() - 0.01) < 0.003
    lrs = []
    for _ in range(6):  # semilearn steps the scheduler once per iteration
        lrs.append(sorted(g["lr"] for g in alg.optimizer.param_groups))
        alg.optimizer.step()
        alg.scheduler.step()
    expected = [0.01, 0.01, 0.001, 0.001, 0.0001, 0.0001]
    for got, lr in zip(lrs, expected):
        assert got[0] == pytest.approx(lr) and got[1] == pytest.approx(10 * lr)
    # the default is USB's cosine: not piecewise constant
    cos = build("selftuning", net="small_cnn", st_queue_size=4, st_proj_dim=16,
                num_train_iter=6, lr=0.01)
    cos.optimizer.step()
    cos.scheduler.step()
    assert min(g["lr"] for g in cos.optimizer.param_groups) < 0.01
    for key, value in (("st_lr_schedule", "step"), ("st_lr_milestones", [4, 2]),
                       ("st_lr_gamma", 0.0), ("st_momentum_updates", 0),
                       ("st_classifier_init", "zeros")):
        with pytest.raises(ValueError, match=key):
            build("selftuning", net="small_cnn", st_queue_size=4, st_proj_dim=16,
                  **{key: value})


@pytest.mark.parametrize("updates", [1, 2])
def test_momentum_updates_per_step_give_m_to_the_power(build, updates):
    m = 0.9
    alg = build("selftuning", net="small_cnn", st_queue_size=4, st_proj_dim=16,
                st_momentum=m, st_momentum_updates=updates)
    net = alg.st_net
    with torch.no_grad():  # make the key encoder differ from the query encoder
        for p in net.backbone_k.parameters():
            p.add_(0.5)
    q0 = [p.detach().clone() for p in net.backbone.parameters()]
    k0 = [p.detach().clone() for p in net.backbone_k.parameters()]
    data = alg.dataset_dict
    batch = {"x_lb": torch.stack([data["train_lb"][i]["x_lb"] for i in range(4)]),
             "y_lb": torch.arange(4) % 4,
             "x_ulb_w": torch.stack([data["train_ulb"][i]["x_ulb_w"] for i in range(8)]),
             "x_ulb_s": torch.stack([data["train_ulb"][i]["x_ulb_s"] for i in range(8)])}
    alg.train_step(**batch)  # the optimizer step comes later (semilearn's hook): q unchanged
    eff = m ** updates
    for q, k, now in zip(q0, k0, net.backbone_k.parameters()):
        torch.testing.assert_close(now, eff * k + (1 - eff) * q)
