"""Self-Tuning (Wang et al., ICML 2021) as a semilearn algorithm, and Self-Tuning + DM (spec §6.2).

``L = L_CE + L_PGC^l + L_PGC^u``: cross-entropy on the labeled queries, and Pseudo Group
Contrast (:mod:`dm_ssl.losses.pgc`) on labeled samples with their true labels and on unlabeled
samples with the classifier's argmax (no threshold). Queries come from the trained encoder and
projector, keys from a momentum copy of both (m = 0.999); keys are enqueued per class after the
step. The classifier head trains at ``head_lr_mult`` (10) × the backbone's learning rate.

Options that give the official run (thuml/Self-Tuning ``src/main.py``; README: Differences from
the official code): ``st_lr_schedule='multistep'`` (MultiStepLR at ``st_lr_milestones`` =
6k/12k/18k/24k steps, γ = ``st_lr_gamma`` = 0.1, instead of USB's cosine), ``st_momentum_updates
= 2`` (the official loop calls the momentum update once in the labeled and once in the unlabeled
forward, before the optimizer step, so the key encoder moves with an effective momentum m²), and
``st_classifier_init='normal'`` (the official classifier: N(0, 0.01), bias 0).

The encoder, projector, momentum copies and queues live in one :class:`SelfTuningNet`, so the
optimizer, EMA and checkpoints (queue state included) need nothing special, and evaluation sees
the plain classifier (``forward`` is the backbone's). ``selftuning_dm`` composes the DM term of
spec §6.1 exactly as the FixMatch family does (``dm_hosts.py``): the pseudo-labels reach it
through the masking hook, whose Self-Tuning version keeps every sample (no threshold), and
``L_lu`` applies the threshold of §6.1.
"""

from __future__ import annotations

import copy

import torch
import torch.distributed as dist
import torch.nn.functional as F
from semilearn.algorithms.hooks import PseudoLabelingHook
from semilearn.algorithms.utils import SSL_Argument
from semilearn.core import AlgorithmBase
from semilearn.core.hooks import Hook
from semilearn.core.utils import ALGORITHMS, get_cosine_schedule_with_warmup
from torch import Tensor, nn

from dm_ssl.losses.pgc import enqueue, pgc_loss
from dm_ssl.nets.resnet import head_lr_groups

from .dm_hosts import with_decoupled_mixup
from .mixing import backbone_of


class SelfTuningNet(nn.Module):
    """Query encoder + projector, their momentum copies, and the per-class key queues."""

    def __init__(self, backbone: nn.Module, num_classes: int, proj_dim: int = 1024,
                 queue_size: int = 32, projector: str = "linear") -> None:
        super().__init__()
        feat = getattr(backbone, "num_features", None)
        if feat is None:
            raise ValueError(f"selftuning: {type(backbone).__name__} has no num_features")
        self.backbone = backbone
        if projector == "linear":      # official: one linear layer 2048 -> 1024
            self.projector = nn.Linear(feat, proj_dim)
        elif projector == "mlp":
            self.projector = nn.Sequential(nn.Linear(feat, feat), nn.ReLU(inplace=True),
                                           nn.Linear(feat, proj_dim))
        else:
            raise ValueError(f"st_projector must be linear or mlp, got {projector!r}")
        self.backbone_k = copy.deepcopy(backbone)
        self.projector_k = copy.deepcopy(self.projector)
        for p in list(self.backbone_k.parameters()) + list(self.projector_k.parameters()):
            p.requires_grad_(False)
        self.num_classes, self.queue_size = num_classes, queue_size
        self.num_features = feat
        self.register_buffer("queue", F.normalize(torch.randn(proj_dim, num_classes * queue_size),
                                                  dim=0))
        self.register_buffer("queue_ptr", torch.zeros(num_classes, dtype=torch.long))

    @property
    def query_encoder(self) -> nn.Module:
        """The classifier network (what mixing and evaluation run through)."""
        return self.backbone

    def forward(self, x: Tensor, **kwargs):
        return self.backbone(x, **kwargs)

    @torch.no_grad()
    def momentum_update(self, m: float) -> None:
        q = list(self.backbone.parameters()) + list(self.projector.parameters())
        k = list(self.backbone_k.parameters()) + list(self.projector_k.parameters())
        torch._foreach_mul_(k, m)
        torch._foreach_add_(k, [p.detach() for p in q], alpha=1.0 - m)

    @torch.no_grad()
    def keys(self, x: Tensor) -> Tensor:
        return F.normalize(self.projector_k(self.backbone_k(x)["feat"]), dim=1)


#: the official schedule's milestones (thuml/Self-Tuning src/main.py), in steps
MILESTONES = (6000, 12000, 18000, 24000)


def _check_st_args(a) -> None:
    """Self-Tuning's option values, each error naming its key."""
    if a.st_lr_schedule not in ("cosine", "multistep"):
        raise ValueError(f"st_lr_schedule must be cosine or multistep, got {a.st_lr_schedule!r}")
    ms = a.st_lr_milestones
    if (not isinstance(ms, (list, tuple)) or not ms
            or not all(isinstance(m, int) and not isinstance(m, bool) and m > 0 for m in ms)
            or list(ms) != sorted(set(ms))):
        raise ValueError("st_lr_milestones must be increasing positive integers (steps), "
                         f"got {ms!r}")
    if not 0 < float(a.st_lr_gamma) <= 1:
        raise ValueError(f"st_lr_gamma must be in (0, 1], got {a.st_lr_gamma!r}")
    if int(a.st_momentum_updates) != a.st_momentum_updates or a.st_momentum_updates < 1:
        raise ValueError(f"st_momentum_updates must be an integer >= 1, got "
                         f"{a.st_momentum_updates!r}")
    if a.st_classifier_init not in ("default", "normal"):
        raise ValueError(f"st_classifier_init must be default or normal, got "
                         f"{a.st_classifier_init!r}")


class KeepAllMaskingHook(Hook):
    """Self-Tuning pseudo-labels every unlabeled sample (argmax, no threshold)."""

    @torch.no_grad()
    def masking(self, algorithm, logits_x_ulb, softmax_x_ulb=True, *args, **kwargs):
        return torch.ones(logits_x_ulb.shape[0], device=logits_x_ulb.device)


def _gather(t: Tensor) -> Tensor:
    """All ranks' rows (MoCo's concat_all_gather): the queues stay identical across ranks."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return t
    out = [torch.empty_like(t) for _ in range(dist.get_world_size())]
    dist.all_gather(out, t.contiguous())
    return torch.cat(out)


@ALGORITHMS.register("selftuning")
class SelfTuning(AlgorithmBase):
    """Self-Tuning; see the module docstring. Config keys in :meth:`get_argument`."""

    def __init__(self, args, net_builder, tb_log=None, logger=None):
        super().__init__(args, net_builder, tb_log, logger)
        self.init(p_cutoff=args.p_cutoff, tau=args.st_tau, momentum=args.st_momentum)

    def init(self, p_cutoff: float = 0.95, tau: float = 0.07, momentum: float = 0.999):
        self.p_cutoff, self.tau, self.key_momentum = p_cutoff, tau, momentum

    # -- model -------------------------------------------------------------------------------
    def _st(self, net: nn.Module) -> SelfTuningNet:
        a = self.args
        return SelfTuningNet(net, self.num_classes, a.st_proj_dim, a.st_queue_size,
                             a.st_projector)

    def set_model(self):
        _check_st_args(self.args)  # the first of the base __init__'s calls that reads them
        model = super().set_model()
        if self.args.st_classifier_init == "normal":  # the official Classifier's init
            head = getattr(model, "classifier", None)
            if not isinstance(head, nn.Linear):
                raise ValueError(f"st_classifier_init='normal': {type(model).__name__} has no "
                                 "linear 'classifier' head")
            nn.init.normal_(head.weight, std=0.01)
            nn.init.zeros_(head.bias)
        return self._st(model)

    def set_ema_model(self):
        ema = self._st(self.net_builder(num_classes=self.num_classes))
        ema.load_state_dict(self.model.state_dict())
        return ema

    @property
    def st_net(self) -> SelfTuningNet:
        return backbone_of(self.model)

    def set_optimizer(self):
        """SGD (nesterov) with the classifier head at ``st_head_lr_mult`` × lr (spec §6.2);
        USB's cosine schedule, or the official MultiStepLR (``st_lr_schedule='multistep'``)."""
        a = self.args
        groups = head_lr_groups(self.model, a.lr, a.st_head_lr_mult, a.weight_decay,
                                head_names=("classifier", "mix_head"))
        for group in groups:  # the momentum key encoder is not trained by the optimizer
            group["params"] = [p for p in group["params"] if p.requires_grad]
        optimizer = torch.optim.SGD(groups, lr=a.lr, momentum=a.momentum,
                                    weight_decay=a.weight_decay, nesterov=True)
        if a.st_lr_schedule == "multistep":  # stepped once per iteration, as the official
            scheduler = torch.optim.lr_scheduler.MultiStepLR(
                optimizer, [int(m) for m in a.st_lr_milestones], gamma=float(a.st_lr_gamma))
        else:
            scheduler = get_cosine_schedule_with_warmup(optimizer, self.num_train_iter,
                                                        num_warmup_steps=a.num_warmup_iter)
        return optimizer, scheduler

    def set_hooks(self):
        self.register_hook(PseudoLabelingHook(), "PseudoLabelingHook")
        self.register_hook(KeepAllMaskingHook(), "MaskingHook")
        super().set_hooks()

    # -- the step ----------------------------------------------------------------------------
    def train_step(self, x_lb, y_lb, x_ulb_w, x_ulb_s, x_lb_s=None):
        net, n_l = self.st_net, y_lb.shape[0]
        with self.amp_cm():
            out = self.model(torch.cat([x_lb, x_ulb_w]))
            logits_lb, logits_ulb = out["logits"][:n_l], out["logits"][n_l:]
            q = F.normalize(net.projector(out["feat"]), dim=1)
            # k updates before the optimizer step, all towards the same q: one with m^k
            net.momentum_update(self.key_momentum ** int(self.args.st_momentum_updates))
            # the labeled key view: a second augmentation when the data gives one
            k = net.keys(torch.cat([x_lb if x_lb_s is None else x_lb_s, x_ulb_s]))
            probs_ulb = self.compute_prob(logits_ulb.detach())
            mask = self.call_hook("masking", "MaskingHook", logits_x_ulb=probs_ulb,
                                  softmax_x_ulb=False)
            pseudo = self.call_hook("gen_ulb_targets", "PseudoLabelingHook", logits=probs_ulb,
                                    use_hard_label=True, softmax=False)
            labels = torch.cat([y_lb, pseudo])
            sup_loss = self.ce_loss(logits_lb, y_lb, reduction="mean")
            pgc = pgc_loss(q, k, net.queue.clone(), labels, self.num_classes, self.tau)
            pgc_lb, pgc_ulb = pgc[:n_l].mean(), pgc[n_l:].mean()
            total_loss = sup_loss + pgc_lb + pgc_ulb
        enqueue(net.queue, net.queue_ptr, _gather(k.float()), _gather(labels))
        out_dict = self.process_out_dict(loss=total_loss)
        log_dict = self.process_log_dict(sup_loss=sup_loss.item(), pgc_lb_loss=pgc_lb.item(),
                                         pgc_ulb_loss=pgc_ulb.item(),
                                         total_loss=total_loss.item(),
                                         util_ratio=mask.float().mean().item())
        return out_dict, log_dict

    @staticmethod
    def get_argument():
        return [
            SSL_Argument("--p_cutoff", float, 0.95, "pseudo-label threshold of DM's L_lu"),
            SSL_Argument("--st_tau", float, 0.07, "PGC temperature"),
            SSL_Argument("--st_momentum", float, 0.999, "key encoder momentum"),
            SSL_Argument("--st_queue_size", int, 32, "keys per class (K)"),
            SSL_Argument("--st_proj_dim", int, 1024, "projector output dimension (d)"),
            SSL_Argument("--st_projector", str, "linear", "linear (official) or mlp"),
            SSL_Argument("--st_head_lr_mult", float, 10.0, "classifier lr multiplier"),
            SSL_Argument("--st_lr_schedule", str, "cosine", "cosine (USB) or multistep "
                         "(official)"),
            SSL_Argument("--st_lr_milestones", list, list(MILESTONES),
                         "multistep: the steps where lr is multiplied by st_lr_gamma"),
            SSL_Argument("--st_lr_gamma", float, 0.1, "multistep: the lr factor"),
            SSL_Argument("--st_momentum_updates", int, 1,
                         "key-encoder momentum updates per step (official: 2, so m^2)"),
            SSL_Argument("--st_classifier_init", str, "default",
                         "default or normal (N(0, 0.01), bias 0: the official classifier)"),
        ]


SelfTuningDM = with_decoupled_mixup(SelfTuning, "selftuning_dm", host_mask=False)
