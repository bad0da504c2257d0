"""Supervised mixup training with or without DM, as a semilearn algorithm (spec §6.3).

Any mixer of :mod:`dm_ssl.mixers` × any loss of :mod:`dm_ssl.losses` (MCE, DM(CE), MBCE one /
two, DM(BCE)); with several mixers, one is drawn per batch (``mix_switch_prob``: the DeiT / RSB
recipes switch between Mixup and CutMix with probability 0.5). The mixer's true per-sample λ
goes straight into the loss. Runs on semilearn's trainer, hooks and checkpoints through
dm_ssl's driver, like the SSL algorithms; only the labeled loader is used.

The ImageNet recipes of spec §7 (PyTorch-style, DeiT, RSB A3) are configs of this algorithm,
built from timm's parts rather than re-written ones:

- ``optim``: ``SGD`` / ``AdamW`` are semilearn's (as USB); any other name is a timm optimizer
  (``adamw``, ``lamb``, ``lars``, ...; ``timm.optim.list_optimizers()``), created by
  ``timm.optim.create_optimizer_v2`` with no weight decay on biases and norms;
- schedule: linear warm-up from ``warmup_lr`` over ``num_warmup_iter`` steps, then a cosine
  from ``lr`` to ``min_lr`` over the rest of the run (DeiT: 1e-6 → 1e-3 → 1e-5);
- ``repeated_aug`` > 1: timm's ``RepeatAugSampler`` (DeiT: 3), still ``num_train_iter //
  epoch`` steps per epoch;
- EMA of the weights: semilearn's ``ema_m`` (DeiT 0.99996), used for evaluation;
- label smoothing ``mix_label_smoothing`` (DeiT 0.1); BCE target threshold
  ``mix_bce_threshold`` (RSB 0.2) and ``mix_bce_class_reduction: mean``, as timm's
  ``BinaryCrossEntropy`` (spec §4's form sums over classes);
- transforms (RandAugment, random erasing, bicubic resizes, test size): the dataset keys of
  :func:`dm_ssl.data.supervised_transforms`, timm's own transforms.
"""

from __future__ import annotations

import math
from typing import Any, Dict, Iterator, List

import numpy as np
import torch
from semilearn.algorithms.fullysupervised import FullySupervised
from semilearn.algorithms.utils import SSL_Argument
from semilearn.core.utils import ALGORITHMS
from torch.utils.data import DataLoader, Dataset

from dm_ssl.losses import build_loss
from dm_ssl.mixers import build_mixer
from dm_ssl.mixers.base import frozen_bn_stats


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
    bce = {"target_threshold": args.mix_bce_threshold,
           "class_reduction": args.mix_bce_class_reduction}
    if name == "mbce":
        return {"mode": args.mix_bce_mode, **bce}
    if name == "dm_bce":
        return {"t": args.mix_t, "xi": args.mix_xi, **bce}
    raise ValueError(f"mix_loss: unknown {name!r}; expected mce, dm_ce, mbce or dm_bce")


def mixer_options(value: Any, mixers: List[str]) -> Dict[str, Dict[str, Any]]:
    """Config key ``mix_options``: keyword arguments per mixer name, e.g.
    ``{puzzlemix: {block_nums: [2, 4, 8]}, fmix: {decay_power: 3}}``."""
    value = {} if value is None else value
    if not isinstance(value, dict) or not all(isinstance(v, dict) for v in value.values()):
        raise ValueError("mix_options must map mixer names to their keyword arguments, e.g. "
                         f"{{puzzlemix: {{block_nums: [2, 4]}}}}, got {value!r}")
    unused = sorted(set(value) - set(mixers))
    if unused:
        raise ValueError(f"mix_options: {', '.join(unused)} not in mix_mixers "
                         f"({', '.join(mixers)})")
    return value


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
        options = mixer_options(args.mix_options, mixers)
        try:
            self.mixers = [build_mixer(m, alpha=a, **options.get(m, {}))
                           for m, a in zip(mixers, alphas)]
        except ValueError as err:
            raise ValueError(f"mix_mixers / mix_alpha / mix_options: {err}") from None
        try:
            self.criterion = build_loss(args.mix_loss, **loss_kwargs(args))
        except ValueError as err:
            raise ValueError(f"mix_loss {args.mix_loss!r} and its mix_* keys: {err}") from None
        self.switch_prob = float(args.mix_switch_prob)
        self.mix_prob = float(args.mix_prob)
        if args.mix_bn not in ("update", "freeze"):
            raise ValueError(f"mix_bn must be update or freeze, got {args.mix_bn!r}")
        self.mix_bn = args.mix_bn
        # mixing draws: own generator (reproducible, checkpointed with the DM-style state)
        self.mix_generator = torch.Generator().manual_seed(int(args.seed))

    def set_optimizer(self):
        """The optimizer named by ``optim`` (semilearn's SGD/AdamW, else timm's) and a
        warm-up + full cosine schedule (the supervised recipes of spec §7), not USB's SSL
        schedule ``cos(7πk/16K)``."""
        args = self.args
        if args.optim in ("SGD", "AdamW"):
            optimizer, _ = super().set_optimizer()
        else:
            optimizer = timm_optimizer(self.model, args)
        schedule = warmup_cosine(self.num_train_iter, int(args.num_warmup_iter), float(args.lr),
                                 float(args.warmup_lr), float(args.min_lr))
        return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)

    def set_data_loader(self):
        """semilearn's loaders; with ``repeated_aug`` > 1 the labeled one draws through timm's
        ``RepeatAugSampler`` (DeiT's repeated augmentation)."""
        loaders = super().set_data_loader()
        repeats = int(self.args.repeated_aug)
        if repeats < 1:
            raise ValueError(f"repeated_aug must be >= 1 (1: off), got {self.args.repeated_aug}")
        if loaders is None or repeats == 1:
            return loaders
        import torch.distributed as dist

        replicas, rank = ((dist.get_world_size(), dist.get_rank()) if self.distributed
                          else (1, 0))
        loaders["train_lb"] = RepeatedAugLoader(
            self.dataset_dict["train_lb"], self.args.batch_size,
            self.num_train_iter // self.epochs, repeats, int(self.args.seed),
            num_workers=self.args.num_workers, num_replicas=replicas, rank=rank)
        return loaders

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
            loader = self.loader_dict["train_lb"]
            if isinstance(loader, RepeatedAugLoader):
                loader.set_epoch(epoch)
            for data_lb in loader:
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
                if self.mix_bn == "freeze":
                    # running statistics from the clean batch only (what evaluation sees); the
                    # mixed forward normalises with its batch statistics and updates nothing
                    with torch.no_grad():
                        self.model(x_lb)
                    with frozen_bn_stats(self.model):
                        logits = res.forward(self.model)["logits"]
                else:
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
            SSL_Argument("--mix_options", dict, {}, "keyword arguments per mixer name"),
            SSL_Argument("--mix_switch_prob", float, 0.5, "probability of the second mixer"),
            SSL_Argument("--mix_prob", float, 1.0, "probability that a batch is mixed"),
            SSL_Argument("--mix_bn", str, "update", "update or freeze: BN running statistics "
                         "from the mixed batch, or from a no-grad clean forward"),
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
            SSL_Argument("--mix_bce_threshold", float, None, "BCE target threshold (RSB 0.2)"),
            SSL_Argument("--mix_bce_class_reduction", str, "sum",
                         "BCE over classes: sum (spec §4) or mean (timm's, RSB)"),
            SSL_Argument("--warmup_lr", float, 0.0, "lr at the start of the warm-up"),
            SSL_Argument("--min_lr", float, 0.0, "lr at the end of the cosine"),
            SSL_Argument("--repeated_aug", int, 1, "repeats per image (DeiT 3; 1: off)"),
        ]


def warmup_cosine(total: int, warmup: int, lr: float, warmup_lr: float = 0.0,
                  min_lr: float = 0.0):
    """LambdaLR factor of step k: linear from ``warmup_lr`` to ``lr`` over ``warmup`` steps,
    then ``min_lr + (lr − min_lr)·½(1 + cos(π t / T))`` with t the steps since the warm-up and
    T the rest of the run (spec §7; timm's cosine schedule with warm-up, stepped per iteration).
    """
    if lr <= 0:
        raise ValueError(f"lr must be > 0, got {lr}")
    for key, value in (("warmup_lr", warmup_lr), ("min_lr", min_lr)):
        if not 0 <= value <= lr:
            raise ValueError(f"{key} must be in [0, lr={lr}], got {value}")
    if warmup < 0 or warmup > total:
        raise ValueError(f"num_warmup_iter must be in [0, num_train_iter={total}], got {warmup}")
    start, floor = warmup_lr / lr, min_lr / lr

    def factor(k: int) -> float:
        if k < warmup:
            return start + (1.0 - start) * (k + 1) / warmup
        t = min(k - warmup, total - warmup) / max(total - warmup, 1)
        return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * t))
    return factor


def timm_optimizer(model: torch.nn.Module, args: Any) -> torch.optim.Optimizer:
    """timm's ``create_optimizer_v2`` for config key ``optim`` (biases and norms without weight
    decay, as timm's training script)."""
    from timm.optim import create_optimizer_v2

    if float(args.layer_decay) != 1.0:
        raise ValueError("layer_decay: only with optim SGD or AdamW (semilearn's param groups); "
                         f"timm's optimizer {args.optim!r} is used without it")
    try:
        return create_optimizer_v2(model, opt=str(args.optim).lower(), lr=float(args.lr),
                                   weight_decay=float(args.weight_decay),
                                   momentum=float(args.momentum))
    except ValueError as err:
        raise ValueError(f"optim {args.optim!r}: {err} (SGD, AdamW, or a timm optimizer such "
                         "as adamw, lamb, lars)") from None


class RepeatedAugLoader:
    """``steps`` batches per epoch drawn through timm's ``RepeatAugSampler`` (each image
    ``repeats`` times, the copies spread over the processes). When the sampler runs out
    before ``steps`` it starts a new round, so every epoch has semilearn's length; each
    (seed, epoch, round) gives its own permutation (timm seeds it with the epoch alone)."""

    def __init__(self, dataset: Dataset, batch_size: int, steps: int, repeats: int, seed: int,
                 *, num_workers: int = 0, num_replicas: int = 1, rank: int = 0) -> None:
        from timm.data.distributed_sampler import RepeatAugSampler

        self.sampler = RepeatAugSampler(dataset, num_replicas=num_replicas, rank=rank,
                                        num_repeats=repeats, selected_round=0)
        if len(self.sampler) < batch_size:
            raise ValueError(f"repeated_aug: {len(self.sampler)} samples per process, fewer "
                             f"than batch_size {batch_size}")
        self.loader = DataLoader(dataset, batch_size=batch_size, sampler=self.sampler,
                                 num_workers=num_workers, drop_last=True)
        self.steps, self.seed, self.epoch = int(steps), int(seed), 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.steps

    def __iter__(self) -> Iterator[Any]:
        done, round_ = 0, 0
        while done < self.steps:
            seed = np.random.SeedSequence([self.seed, self.epoch, round_]).generate_state(1)
            self.sampler.set_epoch(int(seed[0]))
            for batch in self.loader:
                yield batch
                done += 1
                if done == self.steps:
                    return
            round_ += 1
