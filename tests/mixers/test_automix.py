import copy
import math

import pytest
import torch
import torch.nn.functional as F

from dm_ssl.losses import mixup_ce
from dm_ssl.mixers import AutoMix, MixBlock, SAMix, build_mixer, mask_loss, momentum_at
from dm_ssl.mixers.automix import (
    capture_features,
    class_weighted_soft_ce,
    detect_mask_layer,
    rescale_lam,
)
from dm_ssl.nets.small_cnn import small_cnn


def _setup(name="automix", seed=0, **kw):
    torch.manual_seed(seed)
    net = small_cnn(5, width=8)
    mixer = build_mixer(name, **kw)
    mixer.setup(net, (3, 16, 16))
    return net, mixer


def _batch(n=6, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, 16, 16, generator=g), torch.randint(0, 5, (n,), generator=g)


def test_momentum_schedule_is_openmixups_cosine_hook():
    total = 1000
    assert momentum_at(0, total) == 0.999 and momentum_at(99, total) == 0.999  # constant first
    t = 500
    expect = 0.999999 - (0.999999 - 0.999) * (math.cos(math.pi * t / total) + 1) / 2
    assert momentum_at(t, total) == pytest.approx(expect, abs=1e-12)
    assert momentum_at(total, total) == pytest.approx(0.999999)
    assert momentum_at(5 * total, total) == pytest.approx(0.999999)
    values = [momentum_at(i, total) for i in range(100, total + 1, 50)]
    assert all(b >= a for a, b in zip(values, values[1:]))


def test_rescale_lam_keeps_the_ends():
    lam = torch.linspace(0, 1, 11, dtype=torch.float64)
    out = rescale_lam(lam, 0.25)
    assert out[0] == 0 and out[-1] == pytest.approx(1.0)
    assert bool((out[1:] > out[:-1]).all())


@pytest.mark.parametrize("mode", ["L1", "L1+Variance", "L2+Variance", "Sparsity"])
@pytest.mark.parametrize("per_sample", [False, True])
def test_mask_loss_against_a_float64_reference_and_gradcheck(mode, per_sample):
    g = torch.Generator().manual_seed(0)
    s = torch.rand(4, 1, 5, 5, generator=g, dtype=torch.float64).requires_grad_()
    lam = (torch.rand(4, generator=g, dtype=torch.float64) if per_sample
           else torch.full((4,), 0.3, dtype=torch.float64))
    margin = 0.05
    got = mask_loss(s, lam, mode, margin, per_sample=per_sample)
    # reference, written out per sample / per batch
    if per_sample:
        m = torch.stack([s[i].mean() for i in range(4)])
        var = torch.stack([((s[i] - m[i]) ** 2).mean() for i in range(4)]).mean()
        gap = 1 - m - lam
    else:
        m = s.sum() / s.numel()
        var = ((s - m) ** 2).sum() / s.numel()
        gap = 1 - m - 0.3
    ref = {"L1": torch.clamp(gap.abs() - margin, min=0).mean(),
           "L1+Variance": torch.clamp(gap.abs() - margin, min=0).mean() - 2 * var,
           "L2+Variance": torch.clamp(gap ** 2 - margin ** 2, min=0).mean() - 2 * var,
           "Sparsity": torch.clamp((s * (s - 1)).abs().mean() - margin, min=0)}[mode]
    assert torch.allclose(got, ref)
    assert torch.autograd.gradcheck(lambda t: mask_loss(t, lam, mode, margin, per_sample), (s,))


def test_samix_class_weighted_soft_ce_is_the_mixup_ce():
    """OpenMixup's neg_weight multiplies zero terms: the official SAMix loss is MCE."""
    g = torch.Generator().manual_seed(0)
    z = torch.randn(8, 6, generator=g, dtype=torch.float64, requires_grad=True)
    y_a, y_b = torch.randint(0, 6, (8,), generator=g), torch.randint(0, 6, (8,), generator=g)
    lam = torch.rand(8, generator=g, dtype=torch.float64)
    for neg in (1.0, 0.5, 0.0):
        assert torch.allclose(class_weighted_soft_ce(z, y_a, y_b, lam, neg),
                              mixup_ce(z, y_a, y_b, lam))
    assert torch.autograd.gradcheck(lambda t: class_weighted_soft_ce(t, y_a, y_b, lam, 0.5), (z,))


def test_mask_layer_detection_and_capture():
    net = small_cnn(5, width=8)
    assert detect_mask_layer(net) == "layer2"
    from dm_ssl.nets.resnet import cifar_resnet18
    assert detect_mask_layer(cifar_resnet18(num_classes=3)) == "layer3"
    x = torch.rand(2, 3, 16, 16)
    f = capture_features(net, "layer2", x)
    assert f.shape == (2, 16, 8, 8)
    with pytest.raises(ValueError, match="mask_layer"):
        detect_mask_layer(torch.nn.Linear(2, 2))


def test_mix_block_shapes_and_options():
    f_a, f_b = torch.randn(3, 16, 4, 4), torch.randn(3, 16, 4, 4)
    lam = torch.tensor([0.2, 0.5, 0.9])
    for kw in ({}, dict(lam_concat=True), dict(lam_concat_v=True), dict(x_v_concat=True),
               dict(lam_mul=1.0, lam_residual=True, value_hidden=8, x_qk_concat=True)):
        s = MixBlock(16, **kw)(f_a, f_b, lam, (16, 16), "bilinear", 0.25)
        assert s.shape == (3, 1, 16, 16) and bool(((s > 0) & (s < 1)).all())
    with pytest.raises(ValueError, match="lam_concat"):
        MixBlock(16, lam_concat=True, x_qk_concat=True)
    with pytest.raises(ValueError, match="x_v_concat"):
        MixBlock(16, lam_concat_v=True, x_v_concat=True)


def test_lam_is_the_true_share_of_a_and_the_masks_mix_pixels():
    net, mixer = _setup()
    x, y = _batch()
    g = torch.Generator().manual_seed(0)
    res = mixer(x, y, generator=g, model=net)
    # rebuild the classifier's mask from the same features and λ: mixed = (1−s) x_a + s x_b
    x_b = x[res.index]
    s = (x - res.x) / (x - x_b)                                  # per pixel share of b
    s = s.mean(1)                                                # all channels agree
    assert torch.allclose(res.lam.double(), 1 - s.reshape(6, -1).double().mean(1), atol=1e-4)
    assert res.aux_loss is not None and res.aux_loss.dim() == 0
    assert {"mixblock_loss", "mixblock_mask_loss"} <= set(res.logs)


def test_lam_margin_falls_back_to_mixup():
    net, mixer = _setup()
    x, y = _batch()
    res = mixer(x, y, lam=0.05, generator=torch.Generator().manual_seed(0), model=net)
    assert torch.allclose(res.lam, torch.full((6,), 0.05))
    assert torch.allclose(res.x, 0.05 * x + 0.95 * x[res.index], atol=1e-6)


def test_gradients_are_isolated():
    """The classifier's loss reaches no Mix Block parameter; the Mix Block's loss reaches no
    classifier (nor encoder) parameter."""
    net, mixer = _setup()
    x, y = _batch()
    res = mixer(x, y, generator=torch.Generator().manual_seed(0), model=net)
    F.cross_entropy(net(res.x)["logits"], y).backward(retain_graph=True)
    assert all(p.grad is None for p in mixer.block.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in net.parameters())
    net.zero_grad(set_to_none=True)
    res.aux_loss.backward()
    assert all(p.grad is None for p in net.parameters())
    assert all(p.grad is None for p in mixer.encoder.parameters())
    grads = [p.grad for p in mixer.block.parameters()]
    assert all(gr is not None for gr in grads) and any(gr.abs().sum() > 0 for gr in grads)


def test_momentum_update_of_the_encoder():
    net, mixer = _setup()
    with torch.no_grad():
        for p in net.parameters():
            p.add_(1.0)                                  # the online net moves away
    k0 = [p.clone() for p in mixer.encoder.parameters()]
    mixer.schedule(0, 100, net)                          # step 0: nothing before it
    assert all(torch.equal(a, b) for a, b in zip(k0, mixer.encoder.parameters()))
    mixer.schedule(1, 100, net)
    m = momentum_at(0, 100)
    for a, p_k, p_q in zip(k0, mixer.encoder.parameters(), net.parameters()):
        assert torch.allclose(p_k, m * a + (1 - m) * p_q)
    after = [p.clone() for p in mixer.encoder.parameters()]
    mixer.schedule(1, 100, net)                          # once per step, however often called
    assert all(torch.equal(a, b) for a, b in zip(after, mixer.encoder.parameters()))
    assert int(mixer.updated_to) == 1
    for b_k, b_q in zip(mixer.encoder.buffers(), net.buffers()):
        assert torch.equal(b_k, b_q)


def test_state_dict_restores_block_encoder_and_schedule():
    net, mixer = _setup()
    mixer.schedule(3, 10, net)
    other = _setup(seed=5)[1]
    other.load_state_dict(mixer.state_dict())
    x, y = _batch()
    a = mixer(x, y, generator=torch.Generator().manual_seed(2), model=net)
    b = other(x, y, generator=torch.Generator().manual_seed(2), model=net)
    assert torch.equal(a.x, b.x) and torch.equal(a.aux_loss, b.aux_loss)
    assert int(other.updated_to) == 3


def test_reproducible_explicit_pairing_and_per_sample_lam():
    net, mixer = _setup("samix", per_sample=True)
    x, y = _batch()
    x_b, y_b = _batch(seed=3)
    r1 = mixer(x, y, x_b=x_b, y_b=y_b, generator=torch.Generator().manual_seed(0), model=net,
               bias_to_a=True)
    r2 = mixer(x, y, x_b=x_b, y_b=y_b, generator=torch.Generator().manual_seed(0), model=net,
               bias_to_a=True)
    assert torch.equal(r1.x, r2.x) and torch.equal(r1.lam, r2.lam) and r1.index is None
    assert torch.equal(r1.y_b, y_b)


def test_eval_mode_has_no_mixer_loss_and_samix_defaults():
    net, mixer = _setup("samix")
    mixer.eval()
    x, y = _batch()
    assert mixer(x, y, generator=torch.Generator().manual_seed(0), model=net).aux_loss is None
    assert isinstance(mixer, SAMix) and isinstance(mixer, AutoMix)
    assert (mixer.upsampling, mixer.mask_loss_mode, mixer.neg_weight) == (
        ("bilinear",), "L1+Variance", 0.5)
    assert mixer.block.key is not None and isinstance(mixer.block.value, torch.nn.Sequential)


def test_errors_name_the_option():
    with pytest.raises(ValueError, match="mask_loss_mode"):
        build_mixer("automix", mask_loss_mode="L3")
    with pytest.raises(ValueError, match="upsampling"):
        build_mixer("automix", upsampling="area")
    with pytest.raises(ValueError, match="lam_margin"):
        build_mixer("automix", lam_margin=0.7)
    mixer = build_mixer("automix")
    with pytest.raises(RuntimeError, match="setup"):
        mixer(*_batch(), model=small_cnn(5, width=8))


def test_deepcopy_and_device_move_carry_the_mixer():
    net, mixer = _setup()
    clone = copy.deepcopy(mixer)
    assert clone.encoder is not mixer.encoder
    names = {n for n, _ in mixer.named_parameters()}
    assert any(n.startswith("block.") for n in names) and any(n.startswith("encoder.")
                                                               for n in names)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_path_matches_the_contract():
    net, mixer = _setup()
    net, mixer = net.cuda(), mixer.cuda()
    x, y = _batch()
    res = mixer(x.cuda(), y.cuda(), generator=torch.Generator(device="cuda").manual_seed(0),
                model=net)
    assert res.x.is_cuda and res.lam.is_cuda and res.aux_loss.is_cuda
    res.aux_loss.backward()
    assert all(p.grad is not None for p in mixer.block.parameters())
    mixer.schedule(1, 10, net)


def test_row_weights_reach_only_the_mixer_loss():
    """SSL: unconfident pseudo-labels (weight 0) do not train the Mix Block."""
    net, mixer = _setup()
    x, y = _batch()
    x_b, y_b = _batch(seed=3)
    w = torch.tensor([1.0, 0, 1, 0, 1, 0])

    def run(weight):
        return mixer(x, y, x_b=x_b, y_b=y_b, generator=torch.Generator().manual_seed(0),
                     model=net, weight=weight)
    full, masked = run(None), run(w)
    assert torch.equal(full.x, masked.x)                  # the classifier's mix is unchanged
    assert masked.logs["mixblock_loss"] < full.logs["mixblock_loss"]
    other = y_b.clone()
    other[w == 0] = (other[w == 0] + 1) % 5               # labels of weight-0 rows do not matter
    again = mixer(x, y, x_b=x_b, y_b=other, generator=torch.Generator().manual_seed(0),
                  model=net, weight=w)
    assert again.logs["mixblock_loss"] == pytest.approx(masked.logs["mixblock_loss"])


TRANSFORMERS = {
    # DeiT-like: 12 blocks -> OpenMixup's out_indices 5 (blocks.5); patch tokens to the grid
    "vit": ("vit_tiny_patch16_224", dict(img_size=32, patch_size=8, depth=4, embed_dim=16,
                                         num_heads=2), "blocks.1", (16, 4, 4)),
    # Swin: the stage-2 output after patch merging (timm: layers.3.downsample), NHWC in timm
    "swin": ("swin_tiny_patch4_window7_224", dict(img_size=32, window_size=2, embed_dim=8,
                                                 depths=(1, 1, 1, 1), num_heads=(1, 1, 1, 1)),
             "layers.3.downsample", (64, 1, 1)),
}


@pytest.mark.parametrize("kind", list(TRANSFORMERS))
@pytest.mark.parametrize("name", ["automix", "samix"])
def test_learned_mixers_on_transformers(kind, name):
    """ViT tokens (class token dropped) and Swin's NHWC maps feed the Mix Block as (N, C, h, w);
    λ is the mask mean; the Mix Block learns, the classifier gets no Mix-Block gradient."""
    from dm_ssl.mixers.automix import as_feature_map, feature_layout
    from dm_ssl.nets.timm_net import timm_net

    model, options, layer, shape = TRANSFORMERS[kind]
    torch.manual_seed(0)
    net = timm_net(model, 5, **options)
    mixer = build_mixer(name)
    mixer.setup(net, (3, 32, 32))
    assert detect_mask_layer(net).endswith(layer)
    feat = capture_features(mixer.encoder, mixer.mask_layer, torch.rand(2, 3, 32, 32),
                            feature_layout(net))
    assert tuple(feat.shape[1:]) == shape
    x = torch.rand(4, 3, 32, 32)
    y = torch.tensor([0, 1, 2, 3])
    res = mixer(x, y, generator=torch.Generator().manual_seed(1), model=net)
    moved = res.index != torch.arange(4)                          # a sample paired with itself
    s = ((x - res.x) / (x - x[res.index])).mean(1)[moved]         # is not mixed at all
    assert bool(moved.any())
    assert torch.allclose(res.lam[moved].double(), 1 - s.reshape(int(moved.sum()), -1)
                          .double().mean(1), atol=1e-3)
    res.aux_loss.backward()
    assert all(p.grad is None for p in net.parameters())           # no Mix-Block gradient
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in mixer.block.parameters())
    tokens = torch.arange(2 * 5 * 3, dtype=torch.float32).reshape(2, 5, 3)  # 1 + 2x2 tokens
    grid = as_feature_map(tokens, "tokens:1")
    assert grid.shape == (2, 3, 2, 2) and torch.equal(grid[0, :, 0, 1], tokens[0, 2])


@pytest.mark.slow
def test_switch_off_skips_the_mix_blocks_mixup_loss_as_often_as_asked():
    net, mixer = _setup(switch_off=0.5)
    x, y = _batch()
    g = torch.Generator().manual_seed(0)
    trained = [("mixblock_loss" in mixer(x, y, generator=g, model=net).logs) for _ in range(200)]
    assert 70 < sum(trained) < 130                               # ~ switch_off of the steps
    assert all("mixblock_mask_loss" in mixer(x, y, generator=g, model=net).logs
               for _ in range(3))                                # the mask loss always
    _, never = _setup(switch_off=0.0)
    assert "mixblock_loss" in never(x, y, generator=g, model=net).logs
    with pytest.raises(ValueError, match="switch_off"):
        build_mixer("automix", switch_off=1.5)
