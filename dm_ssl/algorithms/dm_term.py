"""The DM consistency term for pseudo-labelling algorithms, written once (spec §6.1).

    L = L_host + w_ll · L_ll + w_lu(t) · L_lu

* ``L_ll``: labeled × labeled (a permutation of the labeled batch), DM(CE) on true labels;
* ``L_lu``: labeled sample i × **weak** unlabeled sample i (i < N_l), λ biased toward the
  labeled sample (max(λ, 1−λ)), targets ``(y_l, ŷ_u, λ)`` with the host's hard pseudo-labels,
  each row weighted by ``1[max q_i ≥ τ_mix]``, ``τ_mix = min(p_cutoff, max(p_mix_cutoff, 1−λ))``,
  or by the host's own mask (class-wise thresholds: FlexMatch, FreeMatch, SoftMatch);
* ``w_lu(t) = w_lu · ½(1 − cos(π t / T))`` over the whole run: a true cosine ramp from 0 to w_lu
  (spec §8.3: the reference toolbox compounds it and finishes in ~3.5k of 88k iterations).

Options that restore what the official DMixMatch does (README: Differences from the official
code): ``ramp_ll`` (ramp L_ll like L_lu), ``bias_ll`` (max(λ, 1−λ) in L_ll too), ``bn='freeze'``
(the DM forward leaves BN running statistics to the host's clean batch), ``forward='separate'``
(one forward per term), ``head_init='normal'`` (read by the host's mix head), ``pseudo='ema'``
(the host passes the EMA teacher's probabilities as ``probs_ulb_w``).

This module knows nothing about semilearn: :class:`DMConfig` holds the SSL hyper-parameters
(read from the config once) with the mixing ones in the shared schema
(:class:`~dm_ssl.algorithms.mixing.MixSpec`, keys ``dm_*``); :class:`DecoupledMixupTerm` computes
the term given the model's :class:`~dm_ssl.algorithms.mixing.MixingModule` (one mixer instance
serves L_ll and L_lu), the network, the batch and what the host produced (weak-view
probabilities and mask). A learned mixer's own loss (``MixResult.aux_loss``) is added unweighted
by the ramps: the Mix Block trains from the first step, on L_ll's labeled pairs and on the
L_lu pairs whose pseudo-label is confident (τ = min(p_cutoff, p_mix_cutoff), or the host's
mask). Hosts compose the term (``dm_hosts.py``); Self-Tuning + DM reuses it unchanged.
"""

from __future__ import annotations

import math
from contextlib import nullcontext
from dataclasses import dataclass, field, fields
from typing import Any, Dict, Optional, Tuple

import torch
from torch import Tensor, nn

from dm_ssl.mixers.base import frozen_bn_stats

from .mixing import MixingModule, MixSpec, StepGenerators

MASKS = ("auto", "threshold", "host")
RAMPS = ("none", "cosine")
BN_MODES = ("update", "freeze")
FORWARDS = ("concat", "separate")
PSEUDOS = ("host", "ema")


@dataclass
class DMConfig:
    """DM hyper-parameters: the official ones (spec §6.1) except ``w_ll`` (see below).

    ``w_ll`` defaults to 0 (L_lu only), not the official 1: at full weight from the first step,
    L_ll's gradient on the backbone is 1.3–3.6× the supervised loss's (its mixed targets keep it
    near 2–4 while the CE falls), so in a run of a few hundred to a few thousand steps the model
    fits its labeled data and becomes confident on unlabeled data later, a fixed-threshold host
    keeps fewer pseudo-labels, and accuracy falls 5–15 points behind the host's (issue #11,
    README: Demo results). ``w_ll = 1`` (with ``ramp_ll``) restores the official term; the
    shipped paper configs set it.
    """

    w_ll: float = 0.0
    w_lu: float = 1.0
    p_mix_cutoff: Optional[float] = None  # None: the host's p_cutoff
    mask: str = "auto"                    # auto: host mask for class-wise hosts, else threshold
    ramp_ll: str = "none"        # none: w_ll from the first step; cosine: as L_lu's ramp
    ramp_lu: str = "cosine"
    bias_ll: bool = False        # max(λ, 1−λ) on L_ll too (the official code does)
    bn: str = "update"           # freeze: the DM forward leaves BN running statistics alone
    forward: str = "concat"      # separate: L_ll and L_lu in two forwards (own BN batches)
    pseudo: str = "host"         # ema: L_lu's pseudo-labels from the EMA teacher (read by hosts)
    #: mixer, loss and mix head: the schema shared with supervised mixup (keys dm_mixer, ...)
    mix: MixSpec = field(default_factory=lambda: MixSpec.for_setting("dm"))

    @classmethod
    def from_args(cls, args: Any) -> DMConfig:
        """Read the ``dm_*`` keys of a semilearn args namespace."""
        own = {f.name: getattr(args, f"dm_{f.name}") for f in fields(cls)
               if f.name != "mix" and hasattr(args, f"dm_{f.name}")}
        return cls(**own, mix=MixSpec.from_args(args, "dm"))

    def __post_init__(self) -> None:
        for name in ("w_ll", "w_lu"):
            if not (float(getattr(self, name)) >= 0):
                raise ValueError(f"dm_{name} must be >= 0, got {getattr(self, name)!r}")
        for name, choices in (("mask", MASKS), ("ramp_ll", RAMPS), ("ramp_lu", RAMPS),
                              ("bn", BN_MODES), ("forward", FORWARDS), ("pseudo", PSEUDOS)):
            if getattr(self, name) not in choices:
                raise ValueError(f"dm_{name} must be one of {', '.join(choices)}, "
                                 f"got {getattr(self, name)!r}")
        if self.p_mix_cutoff is not None and not 0 <= float(self.p_mix_cutoff) <= 1:
            raise ValueError(f"dm_p_mix_cutoff must be in [0, 1], got {self.p_mix_cutoff!r}")
        if not isinstance(self.bias_ll, bool):
            raise ValueError(f"dm_bias_ll must be true or false, got {self.bias_ll!r}")

    @property
    def enabled(self) -> bool:
        """All DM weights at 0: the algorithm is exactly its host (no extra forward, no draws)."""
        return self.w_ll > 0 or self.w_lu > 0


def ramp(kind: str, it: int, total: int) -> float:
    """The weight factor of a DM term at iteration ``it``: 1 (``none``) or :func:`cosine_ramp`."""
    return cosine_ramp(it, total) if kind == "cosine" else 1.0


def cosine_ramp(it: int, total: int) -> float:
    """``½(1 − cos(π t/T))``, from 0 at t = 0 to 1 at t = T (clamped)."""
    if total <= 0:
        return 1.0
    return 0.5 * (1.0 - math.cos(math.pi * min(max(it, 0), total) / total))


def mix_threshold_mask(max_prob: Tensor, lam_lb: Tensor, p_cutoff: float,
                       p_mix_cutoff: float) -> Tensor:
    """``1[max q_i ≥ min(p_cutoff, max(p_mix_cutoff, 1 − λ_i))]`` (spec §6.1)."""
    tau = torch.clamp(1.0 - lam_lb.to(max_prob.dtype), min=p_mix_cutoff).clamp(max=p_cutoff)
    return (max_prob >= tau).to(max_prob.dtype)


class DecoupledMixupTerm:
    """Computes ``w_ll L_ll + w_lu(t) L_lu`` (+ a learned mixer's own loss) for one step.

    The mixing machinery (:class:`~dm_ssl.algorithms.mixing.MixingModule`: mixer, loss, mix
    head) belongs to the trained model, not to this object, so the optimizer, EMA and
    checkpoints see it; it is passed to :meth:`__call__`. The mixing draws use this object's
    own generators (:class:`~dm_ssl.algorithms.mixing.StepGenerators`, reseeded from
    ``(seed, rank, it)`` at every step): reproducible, exactly resumable, independent of the
    host's randomness and of the other processes' draws, with the same mixer choices on all.
    """

    def __init__(self, cfg: DMConfig, seed: int = 0, rank: int = 0) -> None:
        self.cfg = cfg
        self.rng = StepGenerators(seed, rank)  # per-step draws of this process, shared choices
        self.generator = self.rng.draws

    def state_dict(self) -> Dict[str, Any]:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        self.generator.set_state(state["generator"])

    def __call__(self, mixing: MixingModule, net: nn.Module, x_lb: Tensor, y_lb: Tensor,
                 x_ulb_w: Tensor, probs_ulb_w: Tensor, host_mask: Optional[Tensor],
                 p_cutoff: float, use_host_mask: bool, it: int, total_it: int,
                 ramp_at: Optional[Tuple[float, int]] = None
                 ) -> Tuple[Tensor, Dict[str, float]]:
        """Returns the weighted term and its logs.

        Args:
            mixing: the model's mixing module (its mix head scores the mixed batches).
            net: the backbone (semilearn net: ``net(x) -> {'logits', 'feat'}``).
            probs_ulb_w: the host's probabilities of the weak unlabeled view (after any
                distribution alignment); their argmax are the hard pseudo-labels.
            host_mask: the host's mask of the unlabeled batch (used when ``use_host_mask``).
            ramp_at: ``(iteration, length)`` on the run's schedule clock for the ramps (an
                extended run: :mod:`dm_ssl.algorithms.schedule`); default ``(it, total_it)``.
        """
        cfg, n_l = self.cfg, y_lb.shape[0]
        if x_ulb_w.shape[0] < n_l:
            raise ValueError(f"L_lu pairs labeled sample i with weak unlabeled sample i: needs "
                             f"uratio >= 1 ({x_ulb_w.shape[0]} unlabeled < {n_l} labeled)")
        at, length = ramp_at if ramp_at is not None else (it, total_it)
        w_ll = cfg.w_ll * ramp(cfg.ramp_ll, at, length)
        w_lu = cfg.w_lu * ramp(cfg.ramp_lu, at, length)
        max_prob, pseudo = probs_ulb_w[:n_l].detach().max(-1)
        g, choice = self.rng.step(it)
        mixing.schedule(it, total_it, net)  # learned mixers: momentum encoder update
        # w_ll = 0 (the default) skips L_ll: no draws, no forward (a ramp's zero still runs it,
        # so the draws do not depend on the step)
        ll = (mixing.mix(net, x_lb, y_lb, generator=g, bias_to_a=cfg.bias_ll,
                         choice_generator=choice)
              if cfg.w_ll > 0 else None)
        p_mix = p_cutoff if cfg.p_mix_cutoff is None else float(cfg.p_mix_cutoff)
        if use_host_mask and host_mask is None:
            raise ValueError("dm_mask='host' but the host produced no mask")
        host_rows = host_mask[:n_l].detach() if use_host_mask else None
        block_w = None
        if mixing.learned:  # its own loss on L_lu's pairs: only the confident pseudo-labels
            # (τ = min(p_cutoff, p_mix_cutoff): the mask below at λ = 1), or the host's mask
            block_w = (host_rows.float() if host_rows is not None else
                       mix_threshold_mask(max_prob, torch.ones_like(max_prob), p_cutoff, p_mix))
        lu = mixing.mix(net, x_lb, y_lb, x_b=x_ulb_w[:n_l], y_b=pseudo, generator=g,
                        bias_to_a=True, weight=block_w, choice_generator=choice)
        logits_ll = None
        with frozen_bn_stats(net) if cfg.bn == "freeze" else nullcontext():
            if ll is None:
                logits_lu = mixing.logits(net, lu)
            elif cfg.forward == "separate" or ll.hook is not None or lu.hook is not None:
                # feature mixing needs one forward each; `separate` gives each its BN batch
                logits_ll, logits_lu = mixing.logits(net, ll), mixing.logits(net, lu)
            else:                      # input mixing: one forward for both mixed batches
                logits_ll, logits_lu = mixing.head_logits(net(torch.cat([ll.x, lu.x]))).split(n_l)
        if host_rows is not None:
            mask_lu = host_rows.to(logits_lu.dtype)
        else:
            mask_lu = mix_threshold_mask(max_prob, lu.lam, p_cutoff, p_mix)
        loss_lu = mixing.loss(logits_lu, lu, weight=mask_lu)
        total = w_lu * loss_lu
        logs = {"mix_lu_loss": loss_lu.item()}
        if ll is not None:
            loss_ll = mixing.loss(logits_ll, ll)
            total = total + w_ll * loss_ll
            logs["mix_ll_loss"] = loss_ll.item()
        for name, res in (("ll", ll), ("lu", lu)):
            if res is not None and res.aux_loss is not None:  # a learned mixer's own loss
                total = total + res.aux_loss
                logs.update({f"{name}_{k}": v for k, v in res.logs.items()})
        logs.update(mix_loss=total.item(), mix_mask_ratio=mask_lu.float().mean().item(),
                    w_ll=w_ll, w_lu=w_lu)
        return total, logs
