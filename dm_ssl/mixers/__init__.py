"""Mixers for (semi-)supervised mixup training (spec §5). Pure torch.

Each mixer is one small class behind the :class:`Mixer` interface, registered by name::

    mixer = build_mixer("cutmix", alpha=1.0, bias_to_a=True)
    res = mixer(x_l, y_l, x_b=x_u, y_b=pseudo, generator=g)    # or index=perm, or neither
    logits = res.forward(model)
    loss = decoupled_mixup_ce(logits, res.y_a, res.y_b, res.lam)  # true share of a, (N,)

The geometry (boxes, Fourier masks, saliency) lives in :mod:`dm_ssl.mixers.geometry` as plain
functions; each mixer module also exposes its pure ``*_images`` function.
"""

from .automix import AutoMix, MixBlock, SAMix, mask_loss, momentum_at
from .base import Mixer, MixResult, Pairing
from .cutmix import CutMix, cutmix_images
from .fmix import FMix, fmix_images
from .manifoldmix import ManifoldMix, detect_layers, manifold_mixing
from .mixup import Mixup, mixup_images
from .puzzlemix import PuzzleMix, puzzlemix_images
from .registry import MIXERS, build_mixer, register_mixer
from .resizemix import ResizeMix, resizemix_images
from .saliencymix import SaliencyMix, saliencymix_images

__all__ = [
    "AutoMix", "CutMix", "FMix", "MIXERS", "ManifoldMix", "MixBlock", "MixResult", "Mixer",
    "Mixup", "Pairing", "PuzzleMix", "ResizeMix", "SAMix", "SaliencyMix", "build_mixer",
    "cutmix_images", "detect_layers", "fmix_images", "manifold_mixing", "mask_loss",
    "mixup_images", "momentum_at", "puzzlemix_images", "register_mixer", "resizemix_images",
    "saliencymix_images",
]
