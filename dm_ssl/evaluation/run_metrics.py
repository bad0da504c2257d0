"""Robustness of a built run's EMA weights on its evaluation set (spec §9, Table A7, Fig. A1):
FGSM error, mixed-sample top-1/top-2, occlusion accuracy, as fractions like ``results.json``.

The measures themselves are :mod:`dm_ssl.evaluation.robustness` (percent); this module feeds
them a semilearn algorithm's evaluation loader (ten-crop sets: their centre crop).
"""

from __future__ import annotations

from typing import Any, Dict, Iterator, Optional, Tuple

from .robustness import fgsm_error_rate, mixed_accuracy, occlusion_accuracy


class EvalMixerError(ValueError):
    """``--mixed`` names a learned mixer the run did not train."""


#: where torchvision's TenCrop puts the centre crop (tl, tr, bl, br, centre, then flipped)
TEN_CROP_CENTRE = 4


def eval_views(loader: Any, device: Any) -> Iterator[Tuple[Any, Any]]:
    """The evaluation batches as ``(x, y)`` on ``device``; a ten-crop evaluation set
    (``ten_crop: true``, items ``(10, C, H, W)``) gives its centre crop, the one image the
    robustness measures perturb."""
    for batch in loader:
        x = batch["x_lb"]
        yield (x[:, TEN_CROP_CENTRE] if x.dim() == 5 else x).to(device), batch["y_lb"].to(device)


def pixel_batches(loader: Any, mean: Any, std: Any, device: Any) -> Iterator[Tuple[Any, Any]]:
    """The evaluation batches back in [0, 1] pixel space (the attacks' ε is in pixels)."""
    import torch

    m = torch.tensor(mean, device=device).view(1, -1, 1, 1)
    s = torch.tensor(std, device=device).view(1, -1, 1, 1)
    for x, y in eval_views(loader, device):
        yield x * s + m, y


def robustness(alg: Any, info: Any, fgsm_eps: Optional[float], occlusion: bool,
               mixed: Optional[str]) -> Dict[str, Any]:
    """FGSM error, mixed-sample top-1/top-2 and occlusion accuracy (spec §9, Table A7, Fig. A1)
    of the EMA weights on the evaluation set, as fractions like the accuracies of
    ``results.json`` and semilearn's evaluation (:mod:`dm_ssl.evaluation.robustness` gives
    percent)."""
    from dm_ssl.mixers import build_mixer

    out: Dict[str, Any] = {}
    loader, dev = alg.loader_dict["eval"], alg.device
    model = alg.model
    alg.ema.apply_shadow()
    try:
        if fgsm_eps is not None:
            out["fgsm_eps"] = fgsm_eps
            out["fgsm_error"] = fgsm_error_rate(
                model, pixel_batches(loader, info.mean, info.std, dev), eps=fgsm_eps,
                mean=info.mean, std=info.std) / 100
        if mixed is not None:
            import torch

            scores = mixed_accuracy(
                model, ({"x_lb": x, "y_lb": y} for x, y in eval_views(loader, dev)),
                _eval_mixer(alg, mixed, build_mixer), lam=0.5,
                generator=torch.Generator().manual_seed(0))
            out[f"mixed_{mixed}"] = {k: v / 100 for k, v in scores.items()}
        if occlusion:
            out["occlusion"] = {str(k): v / 100 for k, v in occlusion_accuracy(
                model, pixel_batches(loader, info.mean, info.std, dev),
                mean=info.mean, std=info.std).items()}
    finally:
        alg.ema.restore()
    return out


def _eval_mixer(alg: Any, name: str, build_mixer: Any) -> Any:
    """The mixer of ``--mixed``: a learned one must be the run's own (its trained Mix Block)."""
    from dm_ssl.mixers import MIXERS

    own = {m.name: m for m in getattr(getattr(alg, "mixing", None), "mixers", [])}
    if name in own and own[name].learned:
        return own[name]
    if getattr(MIXERS.get(name), "learned", False):
        raise EvalMixerError(f"--mixed {name}: a learned mixer's masks come from its trained Mix "
                             f"Block, and this run did not train one (its mixers: "
                             f"{', '.join(own) or 'none'})")
    return build_mixer(name)
