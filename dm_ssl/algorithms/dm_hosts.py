"""``*_dm`` algorithms: a semilearn host plus the DM term, composed once (spec §6.1).

``with_decoupled_mixup(FixMatch, "fixmatch_dm")`` builds ``FixMatch``'s class with
:class:`DecoupledMixupMixin` in front: its ``train_step`` is the host's ``train_step`` (called
unchanged) plus one call of :class:`~dm_ssl.algorithms.dm_term.DecoupledMixupTerm`. What the
term needs from the host — the weak-view probabilities and the mask — is read off the host's
own ``call_hook("masking", ...)`` call, the seam USB gives every pseudo-labelling algorithm.
Adding DM to another host is one line in :data:`HOSTS`.
"""

from __future__ import annotations

import inspect
from typing import Any, Dict, List, Optional, Tuple

import torch
from semilearn.algorithms.utils import SSL_Argument, str2bool
from semilearn.core.utils import ALGORITHMS
from torch import nn

from dm_ssl.mixers.base import frozen_bn_stats

from .dm_term import DecoupledMixupTerm, DMConfig
from .driver import masking_probs
from .mixing import (
    MixingModule,
    WithMixing,
    backbone_of,
    build_mixing,
    optional,
    schema_arguments,
    split_mix_block_params,
)

#: host name -> whether its thresholds are class-wise/adaptive (then L_lu uses the host's mask)
HOSTS: Dict[str, bool] = {"fixmatch": False, "flexmatch": True, "freematch": True,
                          "softmatch": True}


def dm_arguments() -> List[SSL_Argument]:
    """The DM config keys with the spec's defaults: the SSL ones here, the mixing ones from
    the schema shared with supervised mixup (:mod:`dm_ssl.algorithms.mixing`)."""
    d = DMConfig()
    return [
        SSL_Argument("--dm_w_ll", float, d.w_ll, "weight of L_ll (labeled x labeled); official 1"),
        SSL_Argument("--dm_w_lu", float, d.w_lu, "final weight of L_lu (cosine ramp from 0)"),
        *[SSL_Argument(f"--{key}", cast, default, text)
          for key, cast, default, text in schema_arguments("dm")],
        SSL_Argument("--dm_p_mix_cutoff", optional(float), d.p_mix_cutoff,
                     "pseudo-label cutoff of L_lu (None: p_cutoff)"),
        SSL_Argument("--dm_mask", str, d.mask, "auto, threshold or host"),
        SSL_Argument("--dm_ramp_ll", str, d.ramp_ll, "none or cosine: ramp of w_ll"),
        SSL_Argument("--dm_ramp_lu", str, d.ramp_lu, "none or cosine: ramp of w_lu"),
        SSL_Argument("--dm_bias_ll", str2bool, d.bias_ll, "max(lam, 1 - lam) on L_ll too"),
        SSL_Argument("--dm_bn", str, d.bn, "update or freeze: BN running stats in the DM forward"),
        SSL_Argument("--dm_forward", str, d.forward, "concat or separate forwards of L_ll, L_lu"),
        SSL_Argument("--dm_pseudo", str, d.pseudo, "host or ema: who gives L_lu's pseudo-labels"),
    ]


def gradient_ratio(loss: torch.Tensor, reference: torch.Tensor, net: nn.Module) -> float:
    """``‖∇ loss‖ / ‖∇ reference‖`` over ``net``'s parameters, its classifier excluded (the
    ratio ``scripts/exp_ll_gradients.py`` measures). ``torch.autograd.grad`` with the graph
    kept: two extra backward passes, and the step's own backward and gradients unchanged."""
    params = [p for n, p in net.named_parameters() if p.requires_grad
              and not n.startswith(("classifier", "fc.", "head"))]

    def norm(t: torch.Tensor) -> torch.Tensor:
        grads = torch.autograd.grad(t, params, retain_graph=True, allow_unused=True)
        return torch.sqrt(sum((g.float() ** 2).sum() for g in grads if g is not None))
    return float(norm(loss) / norm(reference).clamp_min(1e-12))


class DecoupledMixupMixin:
    """The DM part of a ``*_dm`` algorithm; put in front of the host class."""

    dm_host_mask: bool = False  # set per host by with_decoupled_mixup

    def __init__(self, args, net_builder, tb_log=None, logger=None, **kwargs):
        self.dm_cfg = DMConfig.from_args(args)     # set_model (called by the base) needs it
        self._dm_capture: Optional[Dict[str, Any]] = None
        self.mixing: Optional[MixingModule] = None
        super().__init__(args, net_builder, tb_log, logger, **kwargs)
        # each process draws its own mixing (model init and split stay shared across ranks)
        self.dm = DecoupledMixupTerm(self.dm_cfg, seed=args.seed,
                                     rank=self.rank if self.distributed else 0)
        self.dm_use_host_mask = (self.dm_cfg.mask == "host"
                                 or (self.dm_cfg.mask == "auto" and self.dm_host_mask))
        # the health monitor's gradient measurement (dm_ssl.run.health), every so many steps
        every = getattr(args, "health_grad_every", None)
        self.dm_grad_every = 0 if not getattr(args, "health", False) or self.distributed else (
            int(args.num_eval_iter) if every is None else int(every))

    # -- model: the mixing module (mix head, learned mixers) is part of the trained model -------
    def _with_mixing(self, net: nn.Module, own: bool) -> nn.Module:
        """``net`` with its mixing module (when that has state; else ``net`` itself). ``own``:
        this is the trained model, whose module the DM term uses."""
        if not self.dm_cfg.enabled:
            return net
        mixing = build_mixing(self.dm_cfg.mix, getattr(net, "query_encoder", net),
                              self.num_classes, self.args)
        if own:
            self.mixing = mixing
        return WithMixing(net, mixing) if mixing.has_state else net

    def set_model(self):
        return self._with_mixing(super().set_model(), own=True)

    def set_ema_model(self):
        # the host builds its EMA copy from the model without the mixing module, then it gets one
        model = self.model
        self.model = backbone_of(model)
        try:
            ema_model = super().set_ema_model()
        finally:
            self.model = model
        ema_model = self._with_mixing(ema_model, own=False)
        ema_model.load_state_dict(self.model.state_dict())
        return ema_model

    def set_optimizer(self):
        optimizer, scheduler = super().set_optimizer()
        mult = float(self.dm_cfg.mix.block_lr_mult)
        if self.mixing is not None and self.mixing.learned and mult != 1.0:
            lambdas = getattr(scheduler, "lr_lambdas", [])
            if not isinstance(scheduler, torch.optim.lr_scheduler.LambdaLR) or \
                    len({id(f) for f in lambdas}) != 1:
                raise ValueError(f"dm_block_lr_mult: {self.args.algorithm}'s scheduler "
                                 f"({type(scheduler).__name__}) cannot take a Mix Block group")
            split_mix_block_params(optimizer, self.mixing, mult)
            scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, scheduler.lr_lambdas[0])
        return optimizer, scheduler

    # -- the step -----------------------------------------------------------------------------
    def call_hook(self, fn_name, hook_name=None, *args, **kwargs):
        out = super().call_hook(fn_name, hook_name, *args, **kwargs)
        if self._dm_capture is not None and fn_name == "masking" and hook_name is not None:
            self._dm_capture.update(probs=masking_probs(self, kwargs), mask=out)
        return out

    def _dm_train_step(self, **batch) -> Tuple[dict, dict]:
        if not self.dm_cfg.enabled:  # exactly the host: no extra forward, no extra draws
            return super().train_step(**batch)
        self._dm_capture = {}
        probe = self.dm_grad_every > 0 and (self.it + 1) % self.dm_grad_every == 0
        real_ce = self.ce_loss
        if probe:  # the host's labeled loss: its first ce_loss of the step
            def ce_loss(*args: Any, **kwargs: Any) -> torch.Tensor:
                loss = real_ce(*args, **kwargs)
                self._dm_capture.setdefault("sup_loss", loss)
                return loss
            self.ce_loss = ce_loss
        try:
            out_dict, log_dict = super().train_step(**batch)
            captured = self._dm_capture
        finally:
            self._dm_capture = None
            self.ce_loss = real_ce
        if captured.get("probs") is None:
            raise RuntimeError(f"{self.args.algorithm}: the host never called its masking hook "
                               "with the unlabeled predictions; DM cannot attach to it")
        net = backbone_of(self.model)
        net = getattr(net, "query_encoder", net)  # hosts whose net wraps the classifier net
        probs = captured["probs"]
        if self.dm_cfg.pseudo == "ema":
            probs = self.ema_pseudo_probs(batch["x_ulb_w"][:batch["y_lb"].shape[0]])
        with self.amp_cm():
            dm_loss, logs = self.dm(
                self.mixing, net, batch["x_lb"], batch["y_lb"], batch["x_ulb_w"], probs,
                captured.get("mask"), p_cutoff=float(getattr(self, "p_cutoff", 0.95)),
                use_host_mask=self.dm_use_host_mask, it=self.it, total_it=self.num_train_iter,
                ramp_at=self.schedule_time())
        if probe and captured.get("sup_loss") is not None and dm_loss.requires_grad:
            logs["dm_grad_ratio"] = gradient_ratio(dm_loss, captured["sup_loss"], net)
        out_dict["loss"] = out_dict["loss"] + dm_loss
        log_dict.update(self.process_log_dict(**logs))
        log_dict["train/total_loss"] = out_dict["loss"].item()
        return out_dict, log_dict

    @torch.no_grad()
    def ema_pseudo_probs(self, x_ulb_w: torch.Tensor) -> torch.Tensor:
        """``softmax`` of the EMA teacher on the weak unlabeled views (``dm_pseudo='ema'``).

        ``self.ema_model`` holds the EMA parameters after the previous step (semilearn's EMA
        hook copies them in after every step). As the official DMixMatch's ``encoder_k``, the
        teacher runs in train mode, so BN normalises with this batch's statistics, but its
        running statistics are left alone (they are the online model's, copied each step).
        """
        ema = self.ema_model
        was_training = ema.training
        ema.train()
        try:
            with self.amp_cm(), frozen_bn_stats(ema):
                logits = ema(x_ulb_w)["logits"]
        finally:
            ema.train(was_training)
        return torch.softmax(logits.float(), dim=-1)

    # -- state --------------------------------------------------------------------------------
    def get_save_dict(self):
        save_dict = super().get_save_dict()
        if self.dm_cfg.enabled:
            save_dict["dm_state"] = self.dm.state_dict()
        return save_dict

    def restore_state(self, key: str, value: Any) -> bool:
        """Claim the DM entries of a checkpoint (called by the driver's strict loader)."""
        if key != "dm_state":
            return False
        self.dm.load_state_dict(value)
        return True


def with_decoupled_mixup(host: type, name: str, host_mask: bool) -> type:
    """Register ``host`` + DM under ``name`` in semilearn's algorithm registry."""
    host_args = host.get_argument

    def train_step(self, **batch):
        return DecoupledMixupMixin._dm_train_step(self, **batch)

    # semilearn's process_batch passes exactly the keys named by train_step's signature
    train_step.__signature__ = inspect.signature(host.train_step)
    cls = type(f"{host.__name__}DM", (DecoupledMixupMixin, host), {
        "__module__": __name__,
        "__doc__": f"{host.__name__} + Decoupled Mixup (spec §6.1), registered as {name!r}.",
        "dm_host_mask": host_mask,
        "train_step": train_step,
        "get_argument": staticmethod(lambda: host_args() + dm_arguments()),
    })
    ALGORITHMS.register(name)(cls)
    return cls


def register_all() -> Dict[str, type]:
    """Register ``<host>_dm`` for every host of :data:`HOSTS` (idempotent)."""
    out = {}
    for host_name, host_mask in HOSTS.items():
        name = f"{host_name}_dm"
        out[name] = (ALGORITHMS[name] if name in ALGORITHMS
                     else with_decoupled_mixup(ALGORITHMS[host_name], name, host_mask))
    return out
