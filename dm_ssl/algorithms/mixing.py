"""One mixing pipeline for the SSL DM term and supervised mixup (spec §5, §6.1, §6.3).

Both settings read the same schema (:class:`MixSpec`), build the criterion with the same
:func:`build_criterion` and mix through the same :class:`MixingModule`, an ``nn.Module`` that
holds the mixer(s), the loss and the mix head. When it has state (a mix head, a learned mixer
with its Mix Block and momentum encoder) it is owned by the trained model
(:class:`WithMixing`), so the optimizer, the EMA, checkpoints, ``.to(device)``,
channels_last and DDP see it like the network. Pure torch: no semilearn import.

Config keys are ``<prefix>_<field>``: ``dm_`` for the DM term of the SSL algorithms,
``mix_`` for ``supervised_mixup`` (whose mixer keys keep their first names, ``mix_mixers`` and
``mix_options``). The spec's per-setting defaults, in one place (:data:`SETTING_DEFAULTS`):

===============  =====================  ======================
field            SSL (``dm_``)          supervised (``mix_``)
===============  =====================  ======================
eta              1.0 (§6.1, official)   0.1 (§3: static mixers; 1 for dynamic ones)
scale            pow (§6.1, official)   none
head             separate (§6.1)        shared (the classifier's head)
===============  =====================  ======================

Every other field has the same default in both.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn

from dm_ssl.data.sampling import derive_seed
from dm_ssl.losses import LOSSES, build_loss
from dm_ssl.mixers import build_mixer
from dm_ssl.mixers.base import Mixer, MixResult, unwrap

HEADS = ("separate", "shared")
HEAD_INITS = ("default", "normal")
BN_MODES = ("update", "freeze")

SETTING_DEFAULTS: Dict[str, Dict[str, Any]] = {
    "dm": {"eta": 1.0, "scale": "pow", "head": "separate"},
    "mix": {"eta": 0.1, "scale": "none", "head": "shared"},
}
#: fields whose key is not ``<prefix>_<field>`` in a setting (kept from before the schema)
KEY_NAMES: Dict[str, Dict[str, str]] = {"mix": {"mixer": "mix_mixers",
                                                "mixer_options": "mix_options"}}


def _names(value: Any) -> List[str]:
    if isinstance(value, (list, tuple)):
        return [str(v).strip() for v in value if str(v).strip()]
    return [v.strip() for v in str(value).split(",") if v.strip()]


@dataclass
class MixSpec:
    """What to mix and how to score it; one schema for both settings (module docstring).

    ``mixer`` is one name or several (``mixup,cutmix``: one drawn per batch, the second with
    ``switch_prob``); ``alpha`` one value or one per mixer, None for each mixer's own default
    (1 for the static mixers, 2 for AutoMix / SAMix, OpenMixup's); ``mixer_options`` the
    mixers' keyword arguments, flat for one mixer or keyed by mixer name.
    """

    mixer: Any = "mixup"
    alpha: Any = None
    mixer_options: Dict[str, Any] = field(default_factory=dict)
    switch_prob: float = 0.5
    loss: str = "dm_ce"
    eta: float = 1.0
    mode: str = "both"
    thr: float = 0.5
    scale: str = "pow"
    t: float = 1.0
    k: float = 1.0
    xi: float = 0.8
    bce_mode: str = "one"
    label_smoothing: float = 0.0
    bce_threshold: Optional[float] = None
    bce_class_reduction: str = "sum"
    head: str = "separate"
    head_init: str = "default"
    block_lr_mult: float = 1.0
    prefix: str = "dm"

    @classmethod
    def for_setting(cls, prefix: str, **overrides: Any) -> MixSpec:
        """The spec with the defaults of setting ``prefix`` (``dm`` or ``mix``)."""
        return cls(**{**SETTING_DEFAULTS[prefix], **overrides, "prefix": prefix})

    @classmethod
    def from_args(cls, args: Any, prefix: str) -> MixSpec:
        """Read the ``<prefix>_*`` keys of a semilearn args namespace."""
        values = {}
        for f in fields(cls):
            key = config_key(f.name, prefix)
            if f.name != "prefix" and hasattr(args, key):
                values[f.name] = getattr(args, key)
        return cls.for_setting(prefix, **values)

    def key(self, name: str) -> str:
        return config_key(name, self.prefix)

    def __post_init__(self) -> None:
        self.mixers = _names(self.mixer)
        if not self.mixers:
            raise ValueError(f"{self.key('mixer')}: give at least one mixer (e.g. mixup or "
                             "mixup,cutmix)")
        if self.alpha in (None, "", "None", "none"):
            self.alphas: List[Optional[float]] = [None] * len(self.mixers)
        else:
            try:
                alphas = [float(a) for a in _names(self.alpha)]
            except ValueError:
                raise ValueError(f"{self.key('alpha')}: numbers, got {self.alpha!r}") from None
            if len(alphas) not in (1, len(self.mixers)):
                raise ValueError(f"{self.key('alpha')}: one value or one per mixer "
                                 f"({len(self.mixers)}), got {self.alpha!r}")
            self.alphas = alphas * len(self.mixers) if len(alphas) == 1 else alphas
        self.options = _mixer_options(self.mixer_options, self.mixers, self.key("mixer_options"),
                                      self.key("mixer"))
        if self.loss not in LOSSES:
            raise ValueError(f"{self.key('loss')} must be one of {', '.join(LOSSES)}, "
                             f"got {self.loss!r}")
        for name, choices in (("head", HEADS), ("head_init", HEAD_INITS)):
            if getattr(self, name) not in choices:
                raise ValueError(f"{self.key(name)} must be one of {', '.join(choices)}, "
                                 f"got {getattr(self, name)!r}")
        for name in ("eta", "block_lr_mult"):
            if not float(getattr(self, name)) >= 0:
                raise ValueError(f"{self.key(name)} must be >= 0, got {getattr(self, name)!r}")
        if not 0 <= float(self.switch_prob) <= 1:
            raise ValueError(f"{self.key('switch_prob')} must be in [0, 1], "
                             f"got {self.switch_prob!r}")


def config_key(name: str, prefix: str) -> str:
    """The config key of schema field ``name`` in setting ``prefix``."""
    return KEY_NAMES.get(prefix, {}).get(name, f"{prefix}_{name}")


def _mixer_options(value: Any, mixers: List[str], key: str,
                   mixer_key: str) -> Dict[str, Dict[str, Any]]:
    """Per-mixer keyword arguments from a flat mapping (one mixer) or one keyed by mixer."""
    value = {} if value is None else value
    if not isinstance(value, dict):
        raise ValueError(f"{key} must be a mapping of the mixer's keyword arguments, e.g. "
                         f"{{block_nums: [2, 4]}}, got {value!r}")
    if value and all(isinstance(v, dict) for v in value.values()) and \
            set(value) <= set(mixers) | {m.lower() for m in mixers}:
        return {m: dict(value.get(m, {})) for m in mixers}
    if any(isinstance(v, dict) for v in value.values()):
        unused = sorted(k for k, v in value.items() if isinstance(v, dict) and k not in mixers)
        raise ValueError(f"{key}: {', '.join(unused)} not in {mixer_key} ({', '.join(mixers)})")
    if len(mixers) > 1 and value:
        raise ValueError(f"{key}: with several mixers ({', '.join(mixers)}) key the options by "
                         f"mixer name, e.g. {{{mixers[0]}: {{...}}}}")
    return {mixers[0]: dict(value), **{m: {} for m in mixers[1:]}}


def build_criterion(spec: MixSpec) -> nn.Module:
    """The mixup loss of ``spec`` with the keys it takes (one place maps config -> loss)."""
    name = spec.loss
    if name == "mce":
        kw: Dict[str, Any] = {"label_smoothing": spec.label_smoothing}
    elif name == "dm_ce":
        kw = dict(eta=spec.eta, mode=spec.mode, thr=spec.thr, scale=spec.scale, t=spec.t,
                  k=spec.k, label_smoothing=spec.label_smoothing)
    else:
        kw = {"target_threshold": spec.bce_threshold,
              "class_reduction": spec.bce_class_reduction}
        kw.update({"mode": spec.bce_mode} if name == "mbce" else {"t": spec.t, "xi": spec.xi})
    try:
        return build_loss(name, **kw)
    except ValueError as err:
        raise ValueError(f"{spec.key('loss')} {name!r} and its {spec.prefix}_* keys: "
                         f"{err}") from None


def build_mixers(spec: MixSpec) -> List[Mixer]:
    out = []
    for name, alpha in zip(spec.mixers, spec.alphas):
        kw = dict(spec.options.get(name, {}))
        if alpha is not None:
            kw["alpha"] = alpha
        try:
            out.append(build_mixer(name, **kw))
        except ValueError as err:
            raise ValueError(f"{spec.key('mixer')} / {spec.key('alpha')} / "
                             f"{spec.key('mixer_options')}: {err}") from None
    return out


class StepGenerators:
    """The mixing randomness of a training step, drawn from ``(seed, rank, it)``.

    ``draws`` is per process (λ, partners, boxes, masks: each rank mixes its own shard its own
    way); ``choices`` is the same on every process (mix this step or not, which of two mixers:
    under DDP every process must run the same forwards and backward, or the gradient
    all-reduce waits for a backward that never comes). Both are reseeded at every step, so a
    resumed run repeats a step's draws exactly without restoring any state, and so does a run
    resumed on another number of processes.
    """

    _DRAWS, _CHOICES = 0xD157, 0xC401

    def __init__(self, seed: int, rank: int = 0) -> None:
        self.seed, self.rank = int(seed), int(rank)
        self.draws, self.choices = torch.Generator(), torch.Generator()
        self.step(0)

    def step(self, it: int) -> Tuple[torch.Generator, torch.Generator]:
        """``(draws, choices)``, seeded for iteration ``it``."""
        self.draws.manual_seed(derive_seed(self.seed, self._DRAWS, self.rank, int(it)))
        self.choices.manual_seed(derive_seed(self.seed, self._CHOICES, int(it)))
        return self.draws, self.choices


class MixingModule(nn.Module):
    """The mixer(s), the criterion and the mix head of one algorithm (module docstring).

    ``mix`` draws the mixer (when there are two) and mixes; ``logits`` runs the network on
    the result (through the mix head when there is one); ``loss`` is the criterion on the
    true per-sample λ plus the mixer's own loss. ``schedule`` runs once per step, before any
    mixing, for the learned mixers' momentum updates. The draws come from the caller's
    generator, so a run's randomness stays where it is checkpointed.
    """

    def __init__(self, spec: MixSpec, num_classes: int, feat_dim: Optional[int] = None,
                 seed: int = 0) -> None:
        super().__init__()
        self.spec = spec
        self.mixers = nn.ModuleList(build_mixers(spec))
        self.criterion = build_criterion(spec)
        self.mix_head: Optional[nn.Linear] = None
        if spec.head == "separate":
            if feat_dim is None:
                raise ValueError(f"{spec.key('head')}='separate': the network has no "
                                 f"num_features; use {spec.key('head')}='shared'")
            # its own seed: the global RNG stream (the host's initialisation, data order)
            # must not depend on whether there is a mix head
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                self.mix_head = nn.Linear(feat_dim, num_classes)
                if spec.head_init == "normal":  # OpenMixup's heads: normal(0, 0.01), bias 0
                    nn.init.normal_(self.mix_head.weight, std=0.01)
                    nn.init.zeros_(self.mix_head.bias)

    def setup(self, net: nn.Module, input_shape: Sequence[int], seed: int = 0) -> None:
        """Let learned mixers build their network-dependent parts (under their own seed)."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            for m in self.mixers:
                if m.learned:
                    try:
                        m.setup(net, input_shape, head=self.mix_head)
                    except ValueError as err:  # e.g. no feature map to read: name the key
                        raise ValueError(f"{self.spec.key('mixer_options')} of {m.name}: "
                                         f"{err}") from None

    @property
    def has_state(self) -> bool:
        return any(True for _ in self.parameters()) or any(True for _ in self.buffers())

    @property
    def learned(self) -> bool:
        return any(m.learned for m in self.mixers)

    def learned_parameters(self) -> List[nn.Parameter]:
        """The trainable parameters of the learned mixers (their Mix Blocks)."""
        return [p for m in self.mixers if m.learned for p in m.parameters() if p.requires_grad]

    def schedule(self, it: int, total: int, net: nn.Module) -> None:
        for m in self.mixers:
            m.schedule(it, total, net, self.mix_head)

    def choose(self, generator: Optional[torch.Generator]) -> Mixer:
        if len(self.mixers) == 1:
            return self.mixers[0]
        u = float(torch.rand(1, generator=generator))
        return self.mixers[1 if u < float(self.spec.switch_prob) else 0]

    def mix(self, net: nn.Module, x: Tensor, y: Tensor, *, generator: Optional[torch.Generator],
            x_b: Optional[Tensor] = None, y_b: Optional[Tensor] = None,
            bias_to_a: Optional[bool] = None, mixer: Optional[Mixer] = None,
            weight: Optional[Tensor] = None,
            choice_generator: Optional[torch.Generator] = None) -> MixResult:
        if mixer is None:
            mixer = self.choose(generator if choice_generator is None else choice_generator)
        return mixer(x, y, x_b=x_b, y_b=y_b, generator=generator, model=net,
                     bias_to_a=bias_to_a, weight=weight)

    def head_logits(self, out: Dict[str, Tensor]) -> Tensor:
        return out["logits"] if self.mix_head is None else self.mix_head(out["feat"])

    def logits(self, net: nn.Module, res: MixResult) -> Tensor:
        return self.head_logits(res.forward(net))

    def loss(self, logits: Tensor, res: MixResult, weight: Optional[Tensor] = None) -> Tensor:
        """Criterion on the true per-sample λ (the mixer's own loss is separate: ``aux``)."""
        return self.criterion(logits, res.y_a, res.y_b, res.lam, weight=weight)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("MixingModule is not called; use mix(), logits() and loss()")


class WithMixing(nn.Module):
    """A network plus its :class:`MixingModule`: ``forward`` is the network's.

    State-dict keys: ``backbone.*`` and ``mixing.*``; checkpoints of the earlier layout
    (``mix_head.*`` at the top) load unchanged.
    """

    def __init__(self, backbone: nn.Module, mixing: MixingModule) -> None:
        super().__init__()
        self.backbone = backbone
        self.mixing = mixing
        self._register_load_state_dict_pre_hook(_old_head_keys)

    @property
    def mix_head(self) -> Optional[nn.Module]:
        return self.mixing.mix_head

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self.backbone(*args, **kwargs)


def _old_head_keys(state: Dict[str, Any], prefix: str, *args: Any) -> None:
    for key in [k for k in state if k.startswith(prefix + "mix_head.")]:
        state[prefix + "mixing." + key[len(prefix):]] = state.pop(key)


def backbone_of(model: nn.Module) -> nn.Module:
    """The network of a (DDP-wrapped) model, without its mixing module."""
    model = unwrap(model)
    return model.backbone if isinstance(model, WithMixing) else model


def input_shape(args: Any) -> Tuple[int, int, int]:
    """One sample's (C, H, W) for a learned mixer's dry forward (only its channels matter)."""
    side = int(getattr(args, "img_size", None) or 32)
    return int(getattr(args, "in_channels", 3) or 3), side, side


def build_mixing(spec: MixSpec, net: nn.Module, num_classes: int, args: Any) -> MixingModule:
    """The mixing module of ``net`` (the classifier network), learned mixers set up on it;
    seeded from the run's ``seed`` (``args`` is a semilearn namespace)."""
    mixing = MixingModule(spec, num_classes, feat_dim=getattr(net, "num_features", None),
                          seed=int(args.seed) + 7919)
    mixing.setup(net, input_shape(args), seed=int(args.seed) + 7920)
    return mixing


def split_mix_block_params(optimizer: torch.optim.Optimizer, mixing: Optional[MixingModule],
                           lr_mult: float) -> None:
    """Give the Mix Blocks' parameters their own groups at ``lr_mult ×`` their group's lr
    (OpenMixup's ImageNet configs give the Mix Block its own lr), in place; a no-op with
    ``lr_mult`` 1 or no learned mixer. Call before the lr scheduler is built."""
    if mixing is None or lr_mult == 1.0 or not mixing.learned:
        return
    block = {id(p) for p in mixing.learned_parameters()}
    moved = []
    for g in optimizer.param_groups:
        mine = [p for p in g["params"] if id(p) in block]
        if mine:
            g["params"] = [p for p in g["params"] if id(p) not in block]
            moved.append({**{k: v for k, v in g.items() if k != "params"}, "params": mine})
    for g in moved:
        g["lr"] = g["lr"] * lr_mult
        if "initial_lr" in g:
            g["initial_lr"] = g["initial_lr"] * lr_mult
        g["name"] = "mix_block"
        optimizer.add_param_group(g)
    optimizer.param_groups[:] = [g for g in optimizer.param_groups if g["params"]]


def optional(cast: Any) -> Any:
    """A config-value parser: None / "None" / "none" / "" -> None, else ``cast(value)``."""
    def parse(value: Any) -> Any:
        return None if value in (None, "None", "none", "") else cast(value)
    parse.__name__ = f"optional_{getattr(cast, '__name__', 'value')}"
    return parse


def _names_arg(value: Any) -> Any:
    return ",".join(_names(value)) if isinstance(value, (list, tuple)) else str(value)


#: field -> (type, help); defaults come from :class:`MixSpec` and :data:`SETTING_DEFAULTS`
FIELD_HELP: Dict[str, Tuple[Any, str]] = {
    "mixer": (_names_arg, "mixer of dm_ssl.mixers, or two to switch per batch (a,b)"),
    "alpha": (optional(_names_arg), "Beta(alpha, alpha): one value or one per mixer; None: "
              "each mixer's own (1; AutoMix/SAMix 2)"),
    "mixer_options": (dict, "keyword arguments of the mixer (flat) or per mixer name"),
    "switch_prob": (float, "probability of the second of two mixers"),
    "loss": (str, "mce, dm_ce, mbce or dm_bce"),
    "eta": (float, "DM(CE) decoupled weight eta (SSL 1; supervised 0.1 static, 1 dynamic)"),
    "mode": (str, "DM(CE) mode: both, less or more"),
    "thr": (float, "DM(CE) ratio threshold of mode"),
    "scale": (str, "DM(CE) scale: none or pow"),
    "t": (float, "pow threshold t / DM(BCE) t"),
    "k": (float, "pow exponent k"),
    "xi": (float, "DM(BCE) xi (cutting 0.8, interpolation 1)"),
    "bce_mode": (str, "MBCE target: one or two"),
    "label_smoothing": (float, "label smoothing of the CE parts"),
    "bce_threshold": (optional(float), "BCE target threshold (RSB 0.2)"),
    "bce_class_reduction": (str, "BCE over classes: sum (spec §4) or mean (timm's, RSB)"),
    "head": (str, "separate (a second linear head scores mixed samples) or shared"),
    "head_init": (str, "mix head init: default or normal (N(0, 0.01), bias 0)"),
    "block_lr_mult": (float, "lr of a learned mixer's Mix Block relative to lr"),
}


def schema_arguments(prefix: str) -> List[Tuple[str, Any, Any, str]]:
    """``(key, type, default, help)`` of every schema field in setting ``prefix``."""
    spec = MixSpec.for_setting(prefix)
    return [(config_key(name, prefix), cast, getattr(spec, name), text)
            for name, (cast, text) in FIELD_HELP.items()]
