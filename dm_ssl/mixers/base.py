"""The shared interface of all mixers (spec §5): pairing, λ, and the result they return.

A mixer is an ``nn.Module`` that turns a batch ``x`` with labels ``y`` into a mixed batch whose
row i has component a = ``x[i]`` with share λ_i and component b = its partner with share 1 − λ_i:

    result = mixer(x, y, generator=g)                # partner: x[perm], perm drawn from g
    result = mixer(x, y, index=perm)                 # partner of row i: x[perm[i]]
    result = mixer(x_l, y_l, x_b=x_u, y_b=yhat_u)    # labeled × unlabeled, row i with x_u[i]
    logits = result.forward(model)                   # model(result.x), any hook armed
    loss = criterion(logits, result.y_a, result.y_b, result.lam) + result.aux_loss

λ is ``lam=`` (a float, or a tensor (N,) for per-sample λ) or drawn from Beta(α, α), one per
batch or one per sample (``per_sample=True``); ``bias_to_a`` (the mixer's setting, or the
call's ``bias_to_a=`` when given) replaces it by max(λ, 1−λ) so the labeled component keeps the
larger share (spec §5). ``result.lam`` is always the *true* per-sample share of component a
after the geometry (pasted area, mask mean; spec §8 defect 7), a float tensor (N,) on
``x.device`` (float64 for float64 x, float32 otherwise). All randomness comes from the
optional ``torch.Generator``.

Adding a mixer
--------------
A static input mixer subclasses :class:`Mixer` and implements :meth:`Mixer.mix`, the pure
step ``(x_a, x_b, λ) -> (mixed, λ_eff)``; then registers itself with
``@register_mixer("name")`` (see ``registry.py``).

Dynamic mixers (PuzzleMix, AutoMix, SAMix; spec §5, §5.1) plug in the same way plus:

- set ``needs_model = True``: ``forward`` then refuses to run without ``model=``;
- override :meth:`Mixer.mix_batch` (``mix`` may then raise NotImplementedError): it
  receives the checked batch, labels, the :class:`Pairing`, the λ tensor, the generator and
  the model, and returns a :class:`MixResult` whose ``lam`` is the true share of its masks;
- a *learned* mixer (AutoMix, SAMix) owns parameters: being an ``nn.Module`` owned by the
  trained model (through :class:`dm_ssl.algorithms.mixing.MixingModule`), its parameters reach
  the optimizer, the EMA, checkpoints, ``.to(device)`` and DDP like the network's. It sets
  ``learned = True``, builds what depends on the network in :meth:`Mixer.setup` (called once
  with the network and an input shape), follows the run's progress in :meth:`Mixer.schedule`
  (called before every step's mixing) and returns its own loss in ``MixResult.aux_loss`` (with
  its logs in ``MixResult.logs``), which the step adds to the classifier's loss;
- when mixing must happen *inside* the forward pass (as ManifoldMix does), put a
  context-manager factory in ``MixResult.hook``: ``MixResult.forward`` arms it for exactly
  one call of the model and removes it afterwards.
"""

from __future__ import annotations

import abc
import math
import numbers
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Dict, Optional, Sequence, Union

import torch
from torch import Tensor, nn

from . import _random

LamLike = Union[float, Tensor]


@dataclass
class MixResult:
    """What a mixer returns.

    Attributes:
        x: the batch to feed the model (for ManifoldMix the *unmixed* input, mixed inside
            the network by ``hook``; with an explicit ``x_b`` it is ``cat([x, x_b])``).
        y_a: labels of component a (the batch itself).
        y_b: labels of component b (the partners).
        lam: (N,) true share of component a, on ``x.device``.
        index: the permutation used (None when ``x_b`` was given).
        layer: for feature mixers, the name of the module whose output is mixed.
        hook: ``model -> context manager`` arming feature mixing; None for input mixers.
        aux_loss: a learned mixer's own loss (scalar, already weighted), added to the step's
            loss; None for mixers without parameters.
        logs: scalars to log with the step (a learned mixer's loss parts, mask statistics).
    """

    x: Tensor
    y_a: Tensor
    y_b: Tensor
    lam: Tensor
    index: Optional[Tensor] = None
    layer: Optional[str] = None
    hook: Optional[Callable[[nn.Module], AbstractContextManager[Any]]] = field(
        default=None, repr=False, compare=False)
    aux_loss: Optional[Tensor] = None
    logs: Dict[str, float] = field(default_factory=dict)

    def forward(self, model: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """``model(self.x, *args, **kwargs)``, with ``hook`` armed only during this call."""
        if self.hook is None:
            return model(self.x, *args, **kwargs)
        with self.hook(model):
            return model(self.x, *args, **kwargs)


@dataclass(frozen=True)
class Pairing:
    """Partner of every row: row i mixes with ``x_b[i]`` (labels ``y_b[i]``).

    ``index`` is the permutation when the partner comes from the batch itself
    (``x_b = x[index]``), None when an explicit second batch was given.
    """

    x_b: Tensor
    y_b: Tensor
    index: Optional[Tensor]


# ---------------------------------------------------------------------------------------------
# argument checks: one ValueError that names the offending argument


def _shape(t: Any) -> Any:
    return tuple(t.shape) if isinstance(t, Tensor) else type(t).__name__


def check_alpha(alpha: Optional[float]) -> Optional[float]:
    """``alpha`` of Beta(α, α): None (λ must then be passed to every call) or finite > 0."""
    if alpha is None:
        return None
    if (isinstance(alpha, bool) or not isinstance(alpha, numbers.Real)
            or not math.isfinite(alpha) or alpha <= 0):
        raise ValueError(f"alpha must be > 0 (or None), got {alpha!r}")
    return float(alpha)


def check_flag(value: bool, name: str) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be a bool, got {value!r}")
    return value


def check_generator(generator: Optional[torch.Generator]) -> None:
    if generator is not None and not isinstance(generator, torch.Generator):
        raise ValueError(f"generator must be a torch.Generator or None, "
                         f"got {type(generator).__name__}")


def check_x(x: Tensor, *, image: bool, floating: bool, mixer: str) -> None:
    """``x`` is a non-empty batch; 4-D (N, C, H, W) for image mixers; floating if required."""
    if not isinstance(x, Tensor):
        raise ValueError(f"x must be a tensor, got {type(x).__name__}")
    if image and x.dim() != 4:
        raise ValueError(f"x must be 4-D (N, C, H, W) for {mixer}, got shape {tuple(x.shape)}")
    if x.dim() == 0 or x.shape[0] == 0:
        raise ValueError(f"x must be a non-empty batch (N, ...), got shape {tuple(x.shape)}")
    if floating and not x.is_floating_point():
        raise ValueError(f"x must be a floating-point tensor for {mixer}, got {x.dtype}")


def check_y(y: Tensor, n: int, name: str = "y") -> None:
    if not isinstance(y, Tensor) or y.dim() == 0 or y.shape[0] != n:
        raise ValueError(f"{name} length must equal N={n} (x.shape[0]), got {_shape(y)}")


def check_lam(lam: LamLike, n: int, device: torch.device) -> Tensor:
    """``lam`` as a float64 tensor (N,) on ``device``; a scalar or (1,) tensor is broadcast."""
    if isinstance(lam, Tensor):
        if lam.dtype == torch.bool or lam.is_complex():
            raise ValueError(f"lam must be a real tensor, got {lam.dtype}")
        if lam.dim() > 1 or (lam.dim() == 1 and lam.shape[0] not in (1, n)):
            raise ValueError(f"lam must be a float or a tensor of shape (N,)=({n},), "
                             f"got {tuple(lam.shape)}")
        lam_t = lam.detach().to(device=device, dtype=torch.float64)
    elif isinstance(lam, numbers.Real) and not isinstance(lam, bool):
        lam_t = torch.tensor(float(lam), dtype=torch.float64, device=device)
    else:
        raise ValueError(f"lam must be a float or a tensor of shape (N,), got {type(lam).__name__}")
    if not bool(((lam_t >= 0) & (lam_t <= 1)).all()):  # also rejects nan
        raise ValueError("lam must be in [0, 1]")
    return lam_t.reshape(-1).expand(n) if lam_t.numel() == 1 else lam_t


def check_index(index: Tensor, n: int, device: torch.device) -> Tensor:
    """``index`` must be a permutation of 0..N-1 (integer tensor of shape (N,))."""
    msg = f"index must be a permutation of length N={n}"
    if (not isinstance(index, Tensor) or index.dim() != 1 or index.shape[0] != n
            or index.is_floating_point() or index.is_complex() or index.dtype == torch.bool):
        raise ValueError(f"{msg}, got {_shape(index)}")
    index = index.to(device=device, dtype=torch.long)
    if not torch.equal(index.sort().values, torch.arange(n, device=device)):
        raise ValueError(f"{msg}, got values that are not 0..{n - 1} each once")
    return index


def resolve_pairing(x: Tensor, y: Tensor, *, index: Optional[Tensor], x_b: Optional[Tensor],
                    y_b: Optional[Tensor], generator: Optional[torch.Generator]) -> Pairing:
    """Partner of every row: ``index``, or an explicit ``x_b``/``y_b``, or a random permutation."""
    n = x.shape[0]
    explicit = x_b is not None or y_b is not None
    if index is not None and explicit:
        raise ValueError("pass either index or x_b/y_b, not both")
    if explicit:
        if x_b is None or y_b is None:
            raise ValueError("x_b and y_b must be given together")
        if not isinstance(x_b, Tensor) or x_b.shape != x.shape:
            raise ValueError(f"x_b shape {_shape(x_b)} does not match x {tuple(x.shape)}")
        if x_b.dtype != x.dtype or x_b.device != x.device:
            raise ValueError(f"x_b ({x_b.dtype}, {x_b.device}) does not match x "
                             f"({x.dtype}, {x.device})")
        if not isinstance(y_b, Tensor) or y_b.shape != y.shape:
            raise ValueError(f"y_b shape {_shape(y_b)} does not match y {tuple(y.shape)}")
        return Pairing(x_b=x_b, y_b=y_b, index=None)
    if index is None:
        index = _random.randperm(n, generator=generator, device=x.device)
    else:
        index = check_index(index, n, x.device)
    return Pairing(x_b=x[index], y_b=y[index.to(y.device)], index=index)


def unwrap(model: nn.Module) -> nn.Module:
    """The network inside DataParallel / DistributedDataParallel wrappers: a mixer's own
    passes (saliency, layer lookup) use the bare network, without DDP's hooks."""
    while isinstance(model, (nn.DataParallel, nn.parallel.DistributedDataParallel)):
        model = model.module
    return model


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Put ``model`` and all its submodules in eval mode; restore each one's mode on exit."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for m, training in modes:
            m.training = training


@contextmanager
def frozen_bn_stats(model: nn.Module) -> Iterator[nn.Module]:
    """Batch norm of ``model`` normalises with batch statistics but leaves its running
    statistics (and ``num_batches_tracked``) untouched; every layer's setting is restored on exit.

    A train-mode forward of mixed images would otherwise fold them into the statistics used at
    evaluation (USB's EMA averages parameters only). ``track_running_stats = False`` in train
    mode is exactly that in ``_BatchNorm.forward`` (and ``SyncBatchNorm``): batch statistics,
    no buffer passed, nothing counted.
    """
    layers = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [m.track_running_stats for m in layers]
    for m in layers:
        if m.training:
            m.track_running_stats = False
    try:
        yield model
    finally:
        for m, track in zip(layers, saved):
            m.track_running_stats = track


def logits_of(out: Any) -> Tensor:
    """The logits of a model's output: a tensor, or semilearn's ``{'logits', 'feat'}`` dict."""
    if isinstance(out, Tensor):
        return out
    if isinstance(out, Mapping) and isinstance(out.get("logits"), Tensor):
        return out["logits"]
    raise ValueError("model must return a tensor of logits or a dict with key 'logits', "
                     f"got {type(out).__name__}")


def lam_dtype(x: Tensor) -> torch.dtype:
    """dtype of the returned λ: float64 for float64 inputs, float32 otherwise (λ must stay
    precise for the loss even when x is fp16/bf16/uint8)."""
    return torch.float64 if x.dtype == torch.float64 else torch.float32


# ---------------------------------------------------------------------------------------------


class Mixer(nn.Module, metaclass=abc.ABCMeta):
    """Base class of all mixers. Subclasses implement :meth:`mix` (or :meth:`mix_batch`).

    Args:
        alpha: λ ~ Beta(alpha, alpha) when ``lam`` is not passed to the call; None means
            every call must pass ``lam``. A ``lam`` given to the call overrides ``alpha``.
        bias_to_a: replace λ by max(λ, 1−λ): component a (the labeled one in SSL) gets the
            larger share (spec §5, §6.1).
        per_sample: draw one λ per sample instead of one per batch (spec §1: λ is per sample).
    """

    name: ClassVar[str] = ""
    needs_model: ClassVar[bool] = False  # dynamic/feature mixers need the network
    image_only: ClassVar[bool] = True    # x must be (N, C, H, W)
    floating_only: ClassVar[bool] = False
    learned: ClassVar[bool] = False      # owns parameters trained with the network

    def __init__(self, alpha: Optional[float] = 1.0, bias_to_a: bool = False,
                 per_sample: bool = False) -> None:
        super().__init__()
        self.alpha = check_alpha(alpha)
        self.bias_to_a = check_flag(bias_to_a, "bias_to_a")
        self.per_sample = check_flag(per_sample, "per_sample")

    def extra_repr(self) -> str:
        hparams = {k: v for k, v in vars(self).items()
                   if not k.startswith("_") and k != "training"}
        return ", ".join(f"{k}={v!r}" for k, v in hparams.items())

    def setup(self, model: nn.Module, input_shape: Sequence[int],
              head: Optional[nn.Module] = None) -> None:
        """Build what depends on the network (a learned mixer's encoder copy, the Mix Block's
        input width); ``input_shape`` is one sample's (C, H, W). Static mixers need nothing."""

    def schedule(self, it: int, total: int, model: Optional[nn.Module] = None,
                 head: Optional[nn.Module] = None) -> None:
        """Called before the mixing of every step ``it`` of ``total`` with the online network
        (and mix head): a learned mixer's momentum update. Static mixers need nothing."""

    def forward(self, x: Tensor, y: Tensor, *, lam: Optional[LamLike] = None,
                index: Optional[Tensor] = None, x_b: Optional[Tensor] = None,
                y_b: Optional[Tensor] = None, generator: Optional[torch.Generator] = None,
                model: Optional[nn.Module] = None, bias_to_a: Optional[bool] = None,
                weight: Optional[Tensor] = None) -> MixResult:
        """Mix ``x`` (labels ``y``) with its partners; see the module docstring.

        ``bias_to_a`` overrides the mixer's own setting for this call (one mixer serves both
        L_ll and the λ-biased L_lu of spec §6.1). ``weight`` (N,) weighs each row in a learned
        mixer's own loss (SSL: 0 for unconfident pseudo-labels); static mixers have no own loss
        and ignore it. Random draws happen in a fixed order
        (permutation, λ, geometry), all from ``generator``: the same seed gives a
        bit-identical result on the same device.
        """
        label = self.name or type(self).__name__
        check_generator(generator)
        check_x(x, image=self.image_only, floating=self.floating_only, mixer=label)
        n = x.shape[0]
        check_y(y, n)
        if self.needs_model and model is None:
            raise ValueError(f"{label} needs the network: pass model=...")
        bias = self.bias_to_a if bias_to_a is None else check_flag(bias_to_a, "bias_to_a")
        pair = resolve_pairing(x, y, index=index, x_b=x_b, y_b=y_b, generator=generator)
        lam_t = self.resolve_lam(lam, n, generator=generator, device=x.device, bias_to_a=bias)
        if self.learned:
            return self.mix_batch(x, y, pair, lam_t, generator=generator, model=model,
                                  weight=weight)
        return self.mix_batch(x, y, pair, lam_t, generator=generator, model=model)

    def sample_lam(self, size: int, *, generator: Optional[torch.Generator],
                   device: torch.device) -> Tensor:
        """``size`` draws of λ ~ Beta(α, α), float64. Overridden by ResizeMix (side ratio)."""
        assert self.alpha is not None
        return _random.beta(self.alpha, size, generator=generator, device=device)

    def resolve_lam(self, lam: Optional[LamLike], n: int, *,
                    generator: Optional[torch.Generator], device: torch.device,
                    bias_to_a: Optional[bool] = None) -> Tensor:
        """The requested λ as float64 (N,): given or drawn, then biased if ``bias_to_a``
        (the argument, else the mixer's setting)."""
        if lam is not None:
            lam_t = check_lam(lam, n, device)
        elif self.alpha is None:
            raise ValueError(f"{self.name or type(self).__name__} has alpha=None: pass lam=... "
                             "(exactly one of lam or alpha sets λ)")
        else:
            lam_t = self.sample_lam(n if self.per_sample else 1, generator=generator,
                                    device=device).expand(n)
        bias = self.bias_to_a if bias_to_a is None else bias_to_a
        return torch.maximum(lam_t, 1.0 - lam_t) if bias else lam_t

    @abc.abstractmethod
    def mix(self, x_a: Tensor, x_b: Tensor, lam: Tensor, *,
            generator: Optional[torch.Generator] = None) -> tuple[Tensor, Tensor]:
        """The pure mixing step: returns ``(mixed, λ_eff)``, λ_eff the true share of x_a (N,)."""

    def mix_batch(self, x: Tensor, y: Tensor, pair: Pairing, lam: Tensor, *,
                  generator: Optional[torch.Generator],
                  model: Optional[nn.Module]) -> MixResult:
        """Checked inputs -> :class:`MixResult`. Override for mixers that need more than
        ``mix`` (feature mixing, model-dependent masks)."""
        mixed, lam_eff = self.mix(x, pair.x_b, lam, generator=generator)
        return MixResult(x=mixed, y_a=y, y_b=pair.y_b, lam=lam_eff.to(lam_dtype(x)),
                         index=pair.index)
