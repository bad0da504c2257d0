"""Supervised mixup training with or without DM, as a semilearn algorithm (spec §6.3).

Any mixer of :mod:`dm_ssl.mixers` × any loss of :mod:`dm_ssl.losses` (MCE, DM(CE), MBCE one /
two, DM(BCE)); with several mixers, one is drawn per batch (``mix_switch_prob``: the DeiT / RSB
recipes switch between Mixup and CutMix with probability 0.5). The mixer's true per-sample λ
goes straight into the loss. Runs on semilearn's trainer, hooks and checkpoints through
dm_ssl's driver, like the SSL algorithms; only the labeled loader is used.
"""

from __future__ import annotations

import math
from typing import Any, Dict, List

import torch
from semilearn.algorithms.fullysupervised import FullySupervised
from semilearn.algorithms.utils import SSL_Argument
from semilearn.core.utils import ALGORITHMS

from dm_ssl.losses import build_loss
from dm_ssl.mixers import build_mixer


def _names(value: Any) -> List[str]:
    return [v.strip() for v in str(value).split(",") if v.strip()]


def loss_kwargs(args: Any) -> Dict[str, Any]:
    """The ``mix_*`` keys that the chosen loss takes (one place maps config -> loss)."""
    name = args.mix_loss
    if name == "mce":
        return {"label_smoothing": args.mix_label_smoothing}
    if name == "dm_ce":
        return dict(eta=args.mix_eta, mode=args.mix_mode, thr=args.mix_thr,
                    scale=args.mix_scale, t=args.mix_t, k=args.mix_k,
                    label_smoothing=args.mix_label_smoothing)
    if name == "mbce":
        return {"mode": args.mix_bce_mode}
    if name == "dm_bce":
        return {"t": args.mix_t, "xi": args.mix_xi}
    raise ValueError(f"mix_loss: unknown {name!r}; expected mce, dm_ce, mbce or dm_bce")


@ALGORITHMS.register("supervised_mixup")
class SupervisedMixup(FullySupervised):
    """Mixup-family training on labeled data; see the module docstring."""

    def __init__(self, args, net_builder, tb_log=None, logger=None):
        super().__init__(args, net_builder, tb_log, logger)
        mixers, alphas = _names(args.mix_mixers), [float(a) for a in _names(args.mix_alpha)]
        if not mixers:
            raise ValueError("mix_mixers: give at least one mixer (e.g. mixup or mixup,cutmix)")
        if len(alphas) not in (1, len(mixers)):
            raise ValueError(f"mix_alpha: one value or one per mixer ({len(mixers)}), "
                             f"got {args.mix_alpha!r}")
        alphas = alphas * len(mixers) if len(alphas) == 1 else alphas
        try:
            self.mixers = [build_mixer(m, alpha=a) for m, a in zip(mixers, alphas)]
        except ValueError as err:
            raise ValueError(f"mix_mixers / mix_alpha: {err}") from None
        self.criterion = build_loss(args.mix_loss, **loss_kwargs(args))
        self.switch_prob = float(args.mix_switch_prob)
        self.mix_prob = float(args.mix_prob)
        # mixing draws: own generator (reproducible, checkpointed with the DM-style state)
        self.mix_generator = torch.Generator().manual_seed(int(args.seed))

    def set_optimizer(self):
        """semilearn's SGD with a full cosine decay to 0 (the supervised recipes of spec §7),
        not USB's SSL schedule ``cos(7πk/16K)``."""
        optimizer, _ = super().set_optimizer()
        total, warmup = self.num_train_iter, self.args.num_warmup_iter

        def factor(k: int) -> float:  # linear warm-up, then ½(1 + cos(π t / T))
            if k < warmup:
                return (k + 1) / warmup
            return 0.5 * (1.0 + math.cos(math.pi * min(k - warmup, total) / max(total - warmup,
                                                                                   1)))

        return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, factor)

    def train(self):
        """semilearn's labeled-only loop, stopping at ``num_train_iter`` (FullySupervised's
        ``it > num_train_iter`` runs one step more than configured)."""
        self.model.train()
        self.call_hook("before_run")
        for epoch in range(self.start_epoch, self.epochs):
            self.epoch = epoch
            if self.it >= self.num_train_iter:
                break
            self.call_hook("before_train_epoch")
            for data_lb in self.loader_dict["train_lb"]:
                if self.it >= self.num_train_iter:
                    break
                self.call_hook("before_train_step")
                self.out_dict, self.log_dict = self.train_step(**self.process_batch(**data_lb))
                self.call_hook("after_train_step")
                self.it += 1
            self.call_hook("after_train_epoch")
        self.call_hook("after_run")

    def train_step(self, x_lb, y_lb):
        g = self.mix_generator
        u = torch.rand(2, generator=g).tolist()
        with self.amp_cm():
            if u[0] >= self.mix_prob:  # an unmixed batch: plain targets through the same loss
                logits = self.model(x_lb)["logits"]
                lam = torch.ones(y_lb.shape[0], device=y_lb.device)
                loss = self.criterion(logits, y_lb, y_lb, lam)
                mixer_name = "none"
            else:
                mixer = self.mixers[1 if len(self.mixers) > 1 and u[1] < self.switch_prob
                                    else 0]
                res = mixer(x_lb, y_lb, generator=g, model=self.model)
                logits = res.forward(self.model)["logits"]
                loss = self.criterion(logits, res.y_a, res.y_b, res.lam)
                mixer_name = mixer.name
        out_dict = self.process_out_dict(loss=loss)
        log_dict = self.process_log_dict(sup_loss=loss.item(), mixed=float(mixer_name != "none"))
        return out_dict, log_dict

    def get_save_dict(self):
        save_dict = super().get_save_dict()
        save_dict["mix_generator"] = self.mix_generator.get_state()
        return save_dict

    def restore_state(self, key: str, value: Any) -> bool:
        if key != "mix_generator":
            return False
        self.mix_generator.set_state(value)
        return True

    @staticmethod
    def get_argument():
        return [
            SSL_Argument("--mix_mixers", str, "mixup", "mixer, or mixers to switch (a,b)"),
            SSL_Argument("--mix_alpha", str, "1.0", "Beta(α, α): one value or one per mixer"),
            SSL_Argument("--mix_switch_prob", float, 0.5, "probability of the second mixer"),
            SSL_Argument("--mix_prob", float, 1.0, "probability that a batch is mixed"),
            SSL_Argument("--mix_loss", str, "dm_ce", "mce, dm_ce, mbce or dm_bce"),
            SSL_Argument("--mix_eta", float, 0.1, "DM(CE) η (0.1 static, 1 dynamic mixers)"),
            SSL_Argument("--mix_mode", str, "both", "DM(CE) mode"),
            SSL_Argument("--mix_thr", float, 0.5, "DM(CE) mode threshold"),
            SSL_Argument("--mix_scale", str, "none", "DM(CE) scale (none or pow)"),
            SSL_Argument("--mix_t", float, 1.0, "pow threshold t / DM(BCE) t"),
            SSL_Argument("--mix_k", float, 1.0, "pow exponent k"),
            SSL_Argument("--mix_xi", float, 0.8, "DM(BCE) ξ (cutting 0.8, interpolation 1)"),
            SSL_Argument("--mix_bce_mode", str, "one", "MBCE target: one or two"),
            SSL_Argument("--mix_label_smoothing", float, 0.0, "label smoothing of MCE parts"),
        ]
