"""ManifoldMix (Verma et al., ICML 2019): mixup of hidden features at a random layer (spec §5).

The input goes through the network unmixed; a forward hook on the chosen module replaces
its output ``h`` by ``λ·h + (1−λ)·h[index]``. The hook lives only inside
``MixResult.forward``, so no later forward (evaluation, the host's own passes) is mixed.
"""

from __future__ import annotations

from contextlib import contextmanager
from functools import partial
from typing import Any, Iterator, Optional, Sequence

import torch
from torch import Tensor, nn

from . import _random
from .base import Mixer, MixResult, Pairing, lam_dtype, unwrap
from .mixup import mixup_images
from .registry import register_mixer

# ResNets (torchvision, timm, USB's ResNet50) and USB's WideResNet (conv1, block1..3, bn, fc)
_LAYER_FAMILIES = (("layer1", "layer2", "layer3", "layer4"), ("block1", "block2", "block3"))


def find_layer(model: nn.Module, name: str) -> nn.Module:
    """The submodule ``name`` (dotted path) of ``model``; ValueError naming ``layers`` if absent."""
    try:
        return unwrap(model).get_submodule(name)
    except AttributeError:
        raise ValueError(f"layers: the model has no submodule {name!r}") from None


def detect_layers(model: nn.Module) -> tuple[str, ...]:
    """The first two of ``layer1..layer4`` the model has, else the first two of ``block1..3``."""
    root = unwrap(model)
    for family in _LAYER_FAMILIES:
        found = tuple(n for n in family if isinstance(getattr(root, n, None), nn.Module))
        if found:
            return found[:2]
    raise ValueError(f"could not find layer1..layer4 or block1..block3 in "
                     f"{type(root).__name__}: pass layers=(...) with the module names to mix")


@contextmanager
def manifold_mixing(model: nn.Module, layer: str, lam: Tensor,
                    index: Optional[Tensor] = None) -> Iterator[None]:
    """Arm feature mixing on ``model.<layer>`` for the forward pass(es) run inside the block.

    With ``index`` the module's output h (N, ...) becomes ``λ h + (1−λ) h[index]``; without,
    its output must have 2N rows (batch ``cat([x, x_b])``) and becomes
    ``λ h[:N] + (1−λ) h[N:]`` (N rows, so later layers see N rows). λ (N,) is broadcast over
    feature dims. Only the module's first call is mixed; the hook runs before any other
    forward hook of the module (so feature recorders see the mixed output) and is removed on
    exit, also on error. Raises RuntimeError if the module did not run.
    """
    module = find_layer(model, layer)
    n = lam.shape[0]
    fired = False

    def hook(_: nn.Module, __: Any, out: Any) -> Optional[Tensor]:
        nonlocal fired
        if fired:  # a module called twice in one forward is mixed once
            return None
        fired = True
        if not isinstance(out, Tensor):
            raise RuntimeError(f"layer {layer!r} returned {type(out).__name__}, not a tensor")
        if index is not None:
            return mixup_images(out, out[index.to(out.device)], lam)
        if out.shape[0] != 2 * n:
            raise RuntimeError(f"layer {layer!r} output has {out.shape[0]} rows, expected "
                               f"2N={2 * n} for x_b pairing")
        return mixup_images(out[:n], out[n:], lam)

    handle = module.register_forward_hook(hook, prepend=True)
    try:
        yield
    finally:
        handle.remove()
    if not fired:
        raise RuntimeError(f"layer {layer!r} did not run in the forward pass; nothing was mixed")


@register_mixer("manifoldmix")
class ManifoldMix(Mixer):
    """ManifoldMix: mixup of the output of one module drawn uniformly from ``layers``.

    ``model`` must be passed to the call (to find the layers); run the network with
    ``result.forward(model)``. With an explicit ``x_b``, ``result.x = cat([x, x_b])``: the 2N
    rows share the layers before the mixed one (batch norm sees 2N rows) and N rows leave it.
    The true share is λ (``result.lam``).

    Args:
        layers: module names (dotted paths) to choose from, e.g. ``("layer1", "layer2")``;
            None detects them (:func:`detect_layers`). Mixing the raw input is plain Mixup.
    """

    needs_model = True
    image_only = False

    def __init__(self, alpha: Optional[float] = 1.0, bias_to_a: bool = False,
                 per_sample: bool = False, layers: Optional[Sequence[str]] = None) -> None:
        super().__init__(alpha, bias_to_a, per_sample)
        if layers is not None:
            if isinstance(layers, str):
                layers = (layers,)
            layers = tuple(layers)
            if not layers or not all(isinstance(n, str) and n for n in layers):
                raise ValueError(f"layers must be a non-empty sequence of module names, "
                                 f"got {layers!r}")
        self.layers = layers

    def mix(self, x_a: Tensor, x_b: Tensor, lam: Tensor, *,
            generator: Optional[torch.Generator] = None) -> tuple[Tensor, Tensor]:
        """Feature interpolation, the math the hook applies: ``λ h_a + (1−λ) h_b``."""
        lam = lam.to(x_a.device)
        return mixup_images(x_a, x_b, lam), lam

    def mix_batch(self, x: Tensor, y: Tensor, pair: Pairing, lam: Tensor, *,
                  generator: Optional[torch.Generator],
                  model: Optional[nn.Module]) -> MixResult:
        assert model is not None
        layers = self.layers if self.layers is not None else detect_layers(model)
        for name in layers:
            find_layer(model, name)
        layer = layers[int(_random.randint(len(layers), 1, generator=generator).item())]
        lam = lam.to(lam_dtype(x))
        inputs = x if pair.index is not None else torch.cat([x, pair.x_b])
        hook = partial(manifold_mixing, layer=layer, lam=lam, index=pair.index)
        return MixResult(x=inputs, y_a=y, y_b=pair.y_b, lam=lam, index=pair.index,
                         layer=layer, hook=hook)
