import pytest
import torch
import torch.nn.functional as F

from dm_ssl.losses.pgc import enqueue, pgc_logits, pgc_loss


def data(n=6, c=4, kk=3, d=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    q = F.normalize(torch.randn(n, d, generator=g, dtype=torch.float64), dim=1)
    k = F.normalize(torch.randn(n, d, generator=g, dtype=torch.float64), dim=1)
    queue = F.normalize(torch.randn(d, c * kk, generator=g, dtype=torch.float64), dim=0)
    labels = torch.randint(0, c, (n,), generator=g)
    return q, k, queue, labels


def test_logits_and_targets_against_a_per_sample_computation():
    c, kk, tau = 4, 3, 0.07
    q, k, queue, labels = data(c=c, kk=kk)
    logits, targets = pgc_logits(q, k, queue, labels, c, tau)
    for i, y in enumerate(labels.tolist()):
        pos = queue[:, y * kk:(y + 1) * kk]
        neg = torch.cat([queue[:, :y * kk], queue[:, (y + 1) * kk:]], 1)
        want = torch.cat([(q[i] * k[i]).sum().view(1), q[i] @ pos, q[i] @ neg]) / tau
        torch.testing.assert_close(logits[i], want)
        assert targets[i, :kk + 1].tolist() == [1 / (kk + 1)] * (kk + 1)
        assert targets[i, kk + 1:].abs().sum() == 0


def test_loss_equals_soft_target_ce_of_the_logits_with_same_gradient():
    c, tau = 4, 0.1
    q, k, queue, labels = data(c=c)
    q.requires_grad_()
    logits, targets = pgc_logits(q, k, queue, labels, c, tau)
    ref = -(targets * F.log_softmax(logits, 1)).sum(1)
    out = pgc_loss(q, k, queue, labels, c, tau)
    torch.testing.assert_close(out, ref)
    torch.testing.assert_close(torch.autograd.grad(out.sum(), q)[0],
                               torch.autograd.grad(ref.sum(), q)[0])
    assert torch.autograd.gradcheck(lambda q: pgc_loss(q, k, queue, labels, c, tau), (q,))


def test_enqueue_is_a_per_class_ring_buffer():
    c, kk, d = 3, 2, 4
    queue, ptr = torch.zeros(d, c * kk), torch.zeros(c, dtype=torch.long)
    keys = torch.arange(1, 6, dtype=torch.float32).view(5, 1).expand(5, d).clone()
    labels = torch.tensor([1, 0, 1, 1, 2])    # class 1 three times: its last two win
    # the official loop, sample by sample
    want, wptr = queue.clone(), ptr.clone()
    for key, y in zip(keys, labels.tolist()):
        want[:, y * kk + wptr[y]] = key
        wptr[y] = (wptr[y] + 1) % kk
    enqueue(queue, ptr, keys, labels)
    torch.testing.assert_close(queue, want)
    assert ptr.tolist() == wptr.tolist() == [1, 1, 1]
    # known contents: class 1 holds keys 4 then 3 (slot 0 overwritten by the third sample)
    assert queue[0, 1 * kk:2 * kk].tolist() == [4.0, 3.0]
    assert queue[0, 0:kk].tolist() == [2.0, 0.0] and queue[0, 2 * kk:].tolist() == [5.0, 0.0]


@pytest.mark.parametrize("seed", range(5))
def test_enqueue_matches_the_loop_on_random_batches(seed):
    g = torch.Generator().manual_seed(seed)
    c, kk, d = 4, 3, 2
    queue, ptr = torch.randn(d, c * kk, generator=g), torch.randint(0, kk, (c,), generator=g)
    want, wptr = queue.clone(), ptr.clone()
    for _ in range(3):
        keys = torch.randn(9, d, generator=g)
        labels = torch.randint(0, c, (9,), generator=g)
        for key, y in zip(keys, labels.tolist()):
            want[:, y * kk + wptr[y]] = key
            wptr[y] = (wptr[y] + 1) % kk
        enqueue(queue, ptr, keys, labels)
        torch.testing.assert_close(queue, want)
        assert torch.equal(ptr, wptr)
