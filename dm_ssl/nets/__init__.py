"""Networks in semilearn's interface, plus the builder lookup (dm_ssl's nets, then semilearn's).

semilearn nets return ``{'logits', 'feat'}``, take ``only_feat=True`` (pooled features) and
``only_fc=True`` (features -> logits), and expose ``num_features``; dm_ssl's follow suit so every
algorithm, mixer hook and the DM mix head work with them unchanged.
"""

from __future__ import annotations

from functools import partial
from typing import Any, Callable, Dict

from .resnet import (
    ResNet,
    cifar_resnet18,
    cifar_resnext50,
    head_lr_groups,
    load_pretrained,
    resnet18,
    resnet50,
    resnext50_32x4d,
)
from .small_cnn import SmallCNN, small_cnn

#: dm_ssl's own nets, by config name. They are looked up before semilearn's, so dm_ssl's
#: ``resnet50`` (torchvision's trunk, offline pretrained loading, a working ``only_fc``) replaces
#: semilearn's; its interface is a superset of semilearn's ``ResNet50``.
NETS: Dict[str, Callable[..., Any]] = {
    "small_cnn": small_cnn,
    "resnet18": resnet18,
    "resnet50": resnet50,
    "resnext50_32x4d": resnext50_32x4d,
    "cifar_resnet18": cifar_resnet18,
    "cifar_resnext50": cifar_resnext50,
}


def get_net_builder(name: str, from_name: bool = False, in_channels: int = 3,
                    **options: Any) -> Callable:
    """The builder for config key ``net``: a dm_ssl net, ``timm/<model>`` (any timm model,
    e.g. ``timm/resnet34``, ``timm/deit_small_patch16_224``, ``timm/swin_tiny_patch4_window7_224``),
    else semilearn's (WRN, ...). ``options`` (config key ``net_options``, e.g.
    ``drop_path_rate=0.1`` for DeiT-S) go to the net's constructor."""
    if name.startswith("timm/"):
        from .timm_net import timm_net

        return _with_options(partial(timm_net, name[len("timm/"):], in_channels=in_channels),
                             options)
    if name in NETS:
        return _with_options(partial(NETS[name], in_channels=in_channels), options)
    from semilearn.core.utils import get_net_builder as semilearn_builder

    try:
        builder = semilearn_builder(name, from_name)
    except Exception:  # semilearn raises bare errors for unknown names
        raise ValueError(f"net: unknown {name!r} (dm_ssl nets: {', '.join(NETS)}; or a "
                         "semilearn net such as wrn_28_2, wrn_28_8, resnet50)") from None
    return _with_options(builder, options)


def _with_options(builder: Callable, options: Dict[str, Any]) -> Callable:
    """``builder`` with ``options`` bound; a keyword the net does not take is a ValueError
    naming ``net_options`` (semilearn calls the builder deep inside its constructor)."""
    if not options:
        return builder

    def build(*args: Any, **kwargs: Any) -> Any:
        try:
            return builder(*args, **{**kwargs, **options})
        except TypeError as err:
            if "unexpected keyword" not in str(err):
                raise
            raise ValueError(f"net_options {sorted(options)}: {err}") from None
    return build


__all__ = ["NETS", "ResNet", "SmallCNN", "cifar_resnet18", "cifar_resnext50", "get_net_builder",
           "head_lr_groups", "load_pretrained", "resnet18", "resnet50", "resnext50_32x4d",
           "small_cnn"]
