"""Supervised mixup training with or without DM, as a semilearn algorithm (spec §6.3).

Any mixer of :mod:`dm_ssl.mixers` × any loss of :mod:`dm_ssl.losses` (MCE, DM(CE), MBCE one /
two, DM(BCE)); with several mixers, one is drawn per batch (``mix_switch_prob``: the DeiT / RSB
recipes switch between Mixup and CutMix with probability 0.5). The mixer's true per-sample λ
goes straight into the loss. Mixer, loss and mix head come from the schema and the
:class:`~dm_ssl.algorithms.mixing.MixingModule` shared with the SSL DM term (keys ``mix_*``);
a learned mixer (AutoMix, SAMix) adds its own loss, and ``mix_clean_weight`` > 0 adds a CE on
the clean batch (OpenMixup's AutoMix trains its classifier with both, ``head_one_q``). Runs on
semilearn's trainer, hooks and checkpoints through dm_ssl's driver, like the SSL algorithms;
only the labeled loader is used.

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
from typing import Any, Dict, List

import torch
import torch.nn.functional as F
from semilearn.algorithms.fullysupervised import FullySupervised
from semilearn.algorithms.utils import SSL_Argument
from semilearn.core.utils import ALGORITHMS
from torch.utils.data import DataLoader, Dataset

from dm_ssl.data.sampling import ResumableSampler, SeededDataset, derive_seed
from dm_ssl.mixers.base import frozen_bn_stats

from .mixing import (
    MixSpec,
    StepGenerators,
    WithMixing,
    backbone_of,
    build_mixing,
    schema_arguments,
    split_mix_block_params,
)


@ALGORITHMS.register("supervised_mixup")
class SupervisedMixup(FullySupervised):
    """Mixup-family training on labeled data; see the module docstring."""

    def __init__(self, args, net_builder, tb_log=None, logger=None):
        super().__init__(args, net_builder, tb_log, logger)  # set_model builds self.mixing
        self.mix_prob = float(args.mix_prob)
        if args.mix_bn not in ("update", "freeze"):
            raise ValueError(f"mix_bn must be update or freeze, got {args.mix_bn!r}")
        self.mix_bn = args.mix_bn
        self.clean_weight = float(args.mix_clean_weight)
        if not self.clean_weight >= 0:
            raise ValueError(f"mix_clean_weight must be >= 0, got {args.mix_clean_weight!r}")
        # mixing draws: own generators from (seed, rank, it), reseeded each step (StepGenerators)
        self.mix_rng = StepGenerators(args.seed, self.rank if self.distributed else 0)
        self.mix_generator = self.mix_rng.draws

    @property
    def mixers(self) -> List[Any]:
        return list(self.mixing.mixers)

    @property
    def criterion(self) -> Any:
        return self.mixing.criterion

    def set_model(self):
        """The network with its mixing module (when that has state: a mix head, a learned
        mixer), so the optimizer, EMA and checkpoints see it."""
        net = super().set_model()
        self.mixing = build_mixing(MixSpec.from_args(self.args, "mix"), net, self.num_classes,
                                   self.args)
        return WithMixing(net, self.mixing) if self.mixing.has_state else net

    def set_ema_model(self):
        ema = self.net_builder(num_classes=self.num_classes)
        if isinstance(self.model, WithMixing):
            ema = WithMixing(ema, build_mixing(self.mixing.spec, ema, self.num_classes,
                                               self.args))
        ema.load_state_dict(self.model.state_dict())
        return ema

    def set_optimizer(self):
        """The optimizer named by ``optim`` (semilearn's SGD/AdamW, else timm's) and a
        warm-up + full cosine schedule (the supervised recipes of spec §7), not USB's SSL
        schedule ``cos(7πk/16K)``."""
        args = self.args
        if args.optim in ("SGD", "AdamW"):
            optimizer, _ = super().set_optimizer()
        else:
            optimizer = timm_optimizer(self.model, args)
        split_mix_block_params(optimizer, self.mixing, float(self.mixing.spec.block_lr_mult))
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
        loaders["train_lb"] = repeated_aug_loader(
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
        (g, choice), mixing = self.mix_rng.step(self.it), self.mixing
        u = torch.rand(2, generator=choice).tolist()  # the same on every process
        mixing.schedule(self.it, self.num_train_iter, backbone_of(self.model))
        logs: Dict[str, float] = {}
        with self.amp_cm():
            if u[0] >= self.mix_prob:  # an unmixed batch: plain targets through the same loss
                logits = self.model(x_lb)["logits"]
                lam = torch.ones(y_lb.shape[0], device=y_lb.device)
                loss = self.criterion(logits, y_lb, y_lb, lam)
                mixer_name = "none"
            else:
                mixer = mixing.mixers[1 if len(mixing.mixers) > 1
                                      and u[1] < float(mixing.spec.switch_prob) else 0]
                res = mixing.mix(self.model, x_lb, y_lb, generator=g, mixer=mixer)
                clean = None
                if self.clean_weight > 0:  # the clean batch's CE (AutoMix's head_one_q)
                    clean = F.cross_entropy(self.model(x_lb)["logits"], y_lb)
                elif self.mix_bn == "freeze":
                    # running statistics from the clean batch only (what evaluation sees); the
                    # mixed forward normalises with its batch statistics and updates nothing
                    with torch.no_grad():
                        self.model(x_lb)
                if self.mix_bn == "freeze":
                    with frozen_bn_stats(self.model):
                        logits = mixing.logits(self.model, res)
                else:
                    logits = mixing.logits(self.model, res)
                loss = mixing.loss(logits, res)
                logs["mix_loss"] = loss.item()
                if clean is not None:
                    loss = loss + self.clean_weight * clean
                    logs["clean_loss"] = clean.item()
                if res.aux_loss is not None:  # a learned mixer's own loss (its Mix Block)
                    loss = loss + res.aux_loss
                    logs.update(res.logs)
                mixer_name = mixer.name
        out_dict = self.process_out_dict(loss=loss)
        log_dict = self.process_log_dict(sup_loss=loss.item(), mixed=float(mixer_name != "none"),
                                         **logs)
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
            *[SSL_Argument(f"--{key}", cast, default, text)
              for key, cast, default, text in schema_arguments("mix")],
            SSL_Argument("--mix_prob", float, 1.0, "probability that a batch is mixed"),
            SSL_Argument("--mix_bn", str, "update", "update or freeze: BN running statistics "
                         "from the mixed batch, or from a no-grad clean forward"),
            SSL_Argument("--mix_clean_weight", float, 0.0, "weight of a CE on the clean batch "
                         "(OpenMixup's AutoMix/SAMix: 1)"),
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


def repeated_aug_loader(dataset: Dataset, batch_size: int, steps: int, repeats: int,
                        seed: int, *, num_workers: int = 0, num_replicas: int = 1,
                        rank: int = 0) -> DataLoader:
    """``steps`` batches per epoch drawn through timm's ``RepeatAugSampler`` (each image
    ``repeats`` times, the copies spread over the processes). When the sampler runs out
    before ``steps`` it starts a new round, so every epoch has semilearn's length; each
    (seed, epoch, round) gives its own permutation (timm seeds it with the epoch alone). The
    order goes through :class:`~dm_ssl.data.sampling.ResumableSampler`, so a run resumes
    exactly and each copy of an image gets its own augmentation seed."""
    from timm.data.distributed_sampler import RepeatAugSampler

    inner = RepeatAugSampler(dataset, num_replicas=num_replicas, rank=rank,
                             num_repeats=repeats, selected_round=0)
    if len(inner) < batch_size:
        raise ValueError(f"repeated_aug: {len(inner)} samples per process, fewer "
                         f"than batch_size {batch_size}")
    local = int(steps) * batch_size

    def order(g: torch.Generator) -> torch.Tensor:  # this process's positions
        epoch_seed = int(torch.randint(0, 2**62, (1,), generator=g))
        out: List[int] = []
        round_ = 0
        while len(out) < local:
            inner.set_epoch(derive_seed(epoch_seed, round_) % 2**31)
            round_order = list(iter(inner))  # whole batches of each round, as drop_last did
            out.extend(round_order[:len(round_order) // batch_size * batch_size])
            round_ += 1
        return torch.as_tensor(out[:local])

    sampler = ResumableSampler(len(dataset), local * num_replicas, seed, 0,
                               num_replicas=num_replicas, rank=rank, order=order)
    return DataLoader(SeededDataset(dataset), batch_size=batch_size, sampler=sampler,
                      num_workers=num_workers, drop_last=True)
