"""The paper's propositions, numerically, on one sample's logits (spec §2–3)."""

import pytest
import torch

from dm_ssl.losses import decoupled_mixup_ce, mixup_ce

A, B = torch.tensor([0]), torch.tensor([1])


def descend(loss_fn, lam, steps=300, lr=1.0, c=10):
    z = torch.zeros(1, c, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.SGD([z], lr=lr)
    for _ in range(steps):
        opt.zero_grad()
        loss_fn(z, lam).backward()
        opt.step()
    z = z.detach()[0]
    lse_rest = torch.logsumexp(z[2:], 0)
    p = z.softmax(0)
    return p[0].item(), torch.sigmoid(z[0] - lse_rest).item(), torch.sigmoid(z[1] - lse_rest).item()


def mce(z, lam):
    return mixup_ce(z, A, B, lam)


def dm(z, lam):
    return decoupled_mixup_ce(z, A, B, lam, eta=1.0)


@pytest.mark.parametrize("lam", [0.5, 0.7, 0.9, 0.95])
def test_mce_drives_p_a_to_lambda(lam):
    p_a, _, _ = descend(mce, lam)
    assert abs(p_a - lam) < 0.01


@pytest.mark.parametrize("lam", [0.5, 0.7, 0.9, 0.95])
def test_dm_drives_both_decoupled_probabilities_to_one(lam):
    p_a, phi_a, phi_b = descend(dm, lam)
    assert phi_a > 0.99 and phi_b > 0.99
    assert abs(p_a - lam) < 0.01          # the MCE part still calibrates p_a to λ
    # and it is the decoupled term that does it: MCE alone is less confident on the minority
    _, _, phi_b_mce = descend(mce, lam)
    assert phi_b > phi_b_mce
