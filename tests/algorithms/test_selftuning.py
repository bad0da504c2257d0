import math

import torch

from dm_ssl.algorithms import SelfTuningNet, WithMixHead

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
                dm_mask="threshold", p_cutoff=0.0)
    assert isinstance(alg.model, WithMixHead) and isinstance(alg.model.backbone, SelfTuningNet)
    logs = _train_logs(alg)
    last = logs[-1]
    for key in ("train/pgc_ulb_loss", "train/mix_ll_loss", "train/mix_lu_loss", "train/w_lu"):
        assert key in last
    assert last["train/mix_mask_ratio"] == 1.0       # p_cutoff = 0 keeps every L_lu row
    assert math.isfinite(last["train/total_loss"])
