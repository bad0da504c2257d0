"""ImageNet-style ResNets (torchvision's) in semilearn's interface, plus offline weight loading.

Nets (spec §6.2–6.3): ``resnet18``, ``resnet50``, ``resnext50_32x4d`` (ImageNet stem: 7×7/2 conv
+ max-pool) and ``cifar_resnet18``, ``cifar_resnext50`` (3×3/1 stem conv, no max-pool, for 32²/64²
inputs). The trunk is torchvision's own modules, held directly by :class:`ResNet` under
torchvision's names (``conv1``, ``bn1``, ``layer1``..``layer4``), so ManifoldMix finds the stages
and torchvision / timm state dicts load key for key; the head is a new ``classifier``.

``pretrained=True`` loads ``pretrained_path`` (a local file, or a URL), else torchvision's
``IMAGENET1K_V1`` weights; a URL's file comes from the torch hub cache
(``$TORCH_HOME/hub/checkpoints``), downloaded through ``torch.hub`` when missing, unless
``HF_HUB_OFFLINE=1``: then one FileNotFoundError says which file to put where.
"""

from __future__ import annotations

import logging
import os
import pickle
from typing import Any, Dict, Iterable, List, NamedTuple, Optional, Sequence, Set, Tuple, Union
from urllib.parse import urlparse

import torch
import torchvision
from torch import Tensor, nn

logger = logging.getLogger(__name__)

#: torchvision's weight enum per architecture; ``IMAGENET1K_V1`` is used: the weights
#: Self-Tuning and the paper's fine-grained runs start from
_TV_WEIGHTS = {
    "resnet18": "ResNet18_Weights",
    "resnet50": "ResNet50_Weights",
    "resnext50_32x4d": "ResNeXt50_32X4D_Weights",
}
#: state-dict keys of the original heads, dropped before loading (the new head starts fresh)
_HEAD_PREFIXES = ("fc.", "classifier.")
#: containers a checkpoint may wrap its state dict in, tried in this order
_WRAPPER_KEYS = ("state_dict", "model", "net")


class ResNet(nn.Module):
    """A torchvision ResNet/ResNeXt trunk in semilearn's interface.

    ``forward(x)`` returns ``{'logits', 'feat'}`` (``feat``: pooled ``num_features``-dim
    features); ``only_feat=True`` returns the features, ``only_fc=True`` maps features to
    logits. A superset of semilearn's ``ResNet50`` wrapper: ``extract``, ``avgpool``,
    ``group_matcher``, ``no_weight_decay`` and the stem/stage attributes have its names (and
    ``only_fc`` uses ``classifier``, where semilearn's calls a non-existent ``fc``).

    Args:
        arch: torchvision builder name (``resnet18``, ``resnet50``, ``resnext50_32x4d``, ...).
        num_classes: outputs of the new linear ``classifier``.
        in_channels: input channels; other than 3 replaces ``conv1`` (then ImageNet weights
            no longer fit the stem).
        cifar_stem: 3×3 stride-1 ``conv1`` and no max-pool (spec §6.3), for 32²/64² inputs.
        **tv_kwargs: passed to torchvision's builder (``zero_init_residual``, ``norm_layer``,
            ``replace_stride_with_dilation``, ...).
    """

    def __init__(self, arch: str, num_classes: int, in_channels: int = 3,
                 cifar_stem: bool = False, **tv_kwargs: Any) -> None:
        super().__init__()
        builder = getattr(torchvision.models, arch, None)
        if builder is None or not arch.startswith(("resnet", "resnext", "wide_resnet")):
            raise ValueError(f"arch: {arch!r} is not a torchvision ResNet builder")
        trunk = builder(weights=None, **tv_kwargs)
        self.arch = arch
        self.cifar_stem = cifar_stem
        self.conv1, self.bn1, self.relu, self.maxpool = (trunk.conv1, trunk.bn1, trunk.relu,
                                                         trunk.maxpool)
        self.layer1, self.layer2, self.layer3, self.layer4 = (trunk.layer1, trunk.layer2,
                                                              trunk.layer3, trunk.layer4)
        self.avgpool = trunk.avgpool
        # construction bookkeeping semilearn's ResNet50 also exposes
        self.inplanes, self.dilation = trunk.inplanes, trunk.dilation
        self.groups, self.base_width = trunk.groups, trunk.base_width
        width = trunk.conv1.out_channels
        if cifar_stem:
            self.conv1 = nn.Conv2d(in_channels, width, 3, stride=1, padding=1, bias=False)
            self.maxpool = nn.Identity()
        elif in_channels != 3:
            self.conv1 = nn.Conv2d(in_channels, width, 7, stride=2, padding=3, bias=False)
        if self.conv1 is not trunk.conv1:  # torchvision's init for the replaced stem
            nn.init.kaiming_normal_(self.conv1.weight, mode="fan_out", nonlinearity="relu")
        self.num_features = trunk.fc.in_features
        self.classifier = nn.Linear(self.num_features, num_classes)

    def extract(self, x: Tensor) -> Tensor:
        """The ``layer4`` feature map (N, num_features, h, w)."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    def forward(self, x: Tensor, only_fc: bool = False, only_feat: bool = False,
                **kwargs: Any) -> Union[Tensor, Dict[str, Tensor]]:
        if only_fc:
            return self.classifier(x)
        feat = torch.flatten(self.avgpool(self.extract(x)), 1)
        if only_feat:
            return feat
        return {"logits": self.classifier(feat), "feat": feat}

    def group_matcher(self, coarse: bool = False, prefix: str = "") -> Dict[str, str]:
        """semilearn's layer-decay grouping: the stem, then stages (coarse) or blocks."""
        blocks = rf"^{prefix}layer(\d+)" if coarse else rf"^{prefix}layer(\d+)\.(\d+)"
        return {"stem": rf"^{prefix}conv1|^{prefix}bn1|^{prefix}maxpool", "blocks": blocks}

    def no_weight_decay(self) -> Set[str]:
        """Names of the 1-D parameters (all BatchNorm affines, incl. ``downsample.1``; biases)."""
        return {n for n, p in self.named_parameters() if p.ndim <= 1}


# -- pretrained weights ------------------------------------------------------------------------

class LoadReport(NamedTuple):
    """What :func:`load_pretrained` loaded: the file, and the keys it loaded / left out."""

    path: str
    loaded: Tuple[str, ...]     # model keys set from the file
    dropped: Tuple[str, ...]    # file keys not loaded: the old head, keys outside the trunk
    missing: Tuple[str, ...]    # model keys the file did not set (the new head if all is well)


def _read_state_dict(path: str) -> Dict[str, Tensor]:
    """A file's tensors: ``.safetensors`` or a ``torch.save`` file (read with weights_only)."""
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file

        return load_file(path, device="cpu")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise ValueError(f"pretrained_path {path!r} holds more than tensors (read with "
                         f"weights_only=True: {str(e).splitlines()[0]}); re-save just its state "
                         "dict with torch.save(ckpt['state_dict'], 'weights.pth')") from None
    while isinstance(obj, dict) and not any(isinstance(v, Tensor) for v in obj.values()):
        inner = next((obj[k] for k in _WRAPPER_KEYS if isinstance(obj.get(k), dict)), None)
        if inner is None:
            raise ValueError(f"pretrained_path {path!r}: no state dict found (keys: "
                             f"{sorted(obj)[:10]}; expected tensors or one of {_WRAPPER_KEYS})")
        obj = inner
    if not isinstance(obj, dict):
        raise ValueError(f"pretrained_path {path!r} holds a {type(obj).__name__}, not a state "
                         "dict (save model.state_dict(), not the model)")
    return {k: v for k, v in obj.items() if isinstance(v, Tensor)}


def _trunk_prefix(keys: Iterable[str], path: str) -> str:
    """The prefix (``''``, ``'module.'``, ``'backbone.'``, ...) in front of the ResNet trunk."""
    keys = set(keys)
    found = sorted({k[:-len("conv1.weight")] for k in keys if k.endswith("conv1.weight")
                    and k[:-len("conv1.weight")] + "layer1.0.conv1.weight" in keys}, key=len)
    if not found:
        raise ValueError(f"pretrained_path {path!r} holds no ResNet trunk (no 'conv1.weight' "
                         f"with 'layer1.0.conv1.weight' beside it); first keys: "
                         f"{sorted(keys)[:5]}")
    if len(found) > 1 and len(found[0]) == len(found[1]):
        raise ValueError(f"pretrained_path {path!r} holds several ResNet trunks "
                         f"(prefixes {found}); save the one to load on its own")
    return found[0]


def _head(names: Iterable[str]) -> List[str]:
    return [n for n in names if n.startswith(_HEAD_PREFIXES)]


def _examples(names: Sequence[str], n: int = 5) -> str:
    more = f", ... ({len(names)} in all)" if len(names) > n else ""
    return "; ".join(names[:n]) + more


def load_pretrained(model: ResNet, path: str, strict: bool = True) -> LoadReport:
    """Load a ResNet trunk from a local file into ``model``; its ``classifier`` stays as it is.

    Accepts torchvision- and timm-format state dicts (same trunk key names), plain or wrapped
    as ``{'state_dict': ...}`` / ``{'model': ...}`` / ``{'net': ...}``, with a ``module.`` (or any
    other) prefix before the trunk, and dm_ssl/semilearn checkpoints of these nets. The old
    head (``fc.*`` / ``classifier.*``) and keys outside the trunk are dropped. Shape
    mismatches always raise ValueError; with ``strict`` so do trunk keys missing from the file
    or file keys the trunk does not have; otherwise they are logged as warnings.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"pretrained_path {path!r} is not a file")
    raw = _read_state_dict(path)
    prefix = _trunk_prefix(raw, path)
    outside = sorted(k for k in raw if not k.startswith(prefix))
    state = {k[len(prefix):]: v for k, v in raw.items() if k.startswith(prefix)}
    dropped = _head(state)
    for k in dropped:
        del state[k]
    own = model.state_dict()
    trunk = {k for k in own if not k.startswith(_HEAD_PREFIXES)}
    mismatched = sorted(f"{k} (file {tuple(v.shape)}, net {tuple(own[k].shape)})"
                        for k, v in state.items() if k in own and v.shape != own[k].shape)
    unexpected = sorted(k for k in state if k not in own)
    # old torchvision files lack BatchNorm's num_batches_tracked; BatchNorm fills it in
    missing = sorted(k for k in trunk - set(state) if not k.endswith("num_batches_tracked"))
    problems = [f"{len(v)} {what}: {_examples(v)}" for what, v in
                (("shape mismatches", mismatched), ("trunk keys missing from the file", missing),
                 ("file keys this net does not have", unexpected)) if v]
    arch = getattr(model, "arch", type(model).__name__)
    arch += " (CIFAR stem)" if getattr(model, "cifar_stem", False) else ""
    if mismatched or (strict and problems):
        raise ValueError(f"pretrained_path {path!r} does not fit {arch}. " + ". ".join(problems)
                         + ". Is it a checkpoint of another architecture or stem?")
    if problems:
        logger.warning("pretrained_path %s, loaded non-strictly into %s: %s", path, arch,
                       ". ".join(problems))
    for k in unexpected:
        del state[k]
    model.load_state_dict(state, strict=False)
    missing_all = sorted(set(own) - set(state))
    logger.info("loaded %d tensors of %s from %s (dropped %d: old head/outside the trunk)",
                len(state), arch, path, len(dropped) + len(outside) + len(unexpected))
    return LoadReport(path, tuple(sorted(state)),
                      tuple(sorted([prefix + k for k in dropped + unexpected] + outside)),
                      tuple(missing_all))


def offline() -> bool:
    """``HF_HUB_OFFLINE=1`` (Hugging Face's switch, honoured for torchvision's weights too)."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def weights_url(arch: str) -> str:
    """The URL of torchvision's ``IMAGENET1K_V1`` weights for ``arch``."""
    if arch not in _TV_WEIGHTS:
        raise ValueError(f"no standard pretrained weights are known for {arch!r}; pass "
                         "pretrained_path")
    return getattr(torchvision.models, _TV_WEIGHTS[arch]).IMAGENET1K_V1.url


def cached_weights(url: str) -> str:
    """Where the torch hub cache keeps ``url``'s file (``$TORCH_HOME/hub/checkpoints/NAME``),
    whether or not it is there yet."""
    return os.path.join(torch.hub.get_dir(), "checkpoints",
                        os.path.basename(urlparse(url).path))


def fetch_weights(url: str) -> str:
    """The torch hub cache file of ``url`` (``torch.hub.get_dir()/checkpoints``, i.e.
    ``$TORCH_HOME/hub/checkpoints``), downloaded first when missing.

    The download is ``torch.hub.download_url_to_file`` (what ``load_state_dict_from_url`` and
    torchvision's ``Weights.get_state_dict`` use): a temporary file renamed on success, its
    SHA-256 checked against the prefix in torchvision's file name. Offline
    (:func:`offline`) or on a failed download: one FileNotFoundError naming the file and URL.
    """
    cached = cached_weights(url)
    name = os.path.basename(cached)
    if os.path.isfile(cached):
        return cached
    how = (f"download {url} on a machine with internet and copy it to {cached} (set TORCH_HOME "
           "to move the cache), or pass pretrained_path=/path/to/weights.pth")
    if offline():
        raise FileNotFoundError(f"pretrained weights {name} are not in the torch hub cache and "
                                f"HF_HUB_OFFLINE is set: {how}")
    match = torch.hub.HASH_REGEX.search(name)
    os.makedirs(os.path.dirname(cached), exist_ok=True)
    try:
        torch.hub.download_url_to_file(url, cached, match.group(1) if match else None,
                                       progress=True)
    except (OSError, RuntimeError, ValueError) as err:  # URLError is an OSError
        raise FileNotFoundError(f"pretrained weights {name}: download failed ({err}); "
                                f"{how}") from None
    return cached


def resolve_pretrained_path(pretrained_path: Optional[str]) -> Optional[str]:
    """``pretrained_path`` as a local file: a URL is its torch hub cache file
    (:func:`fetch_weights`)."""
    if not pretrained_path:
        return None
    if urlparse(str(pretrained_path)).scheme in ("http", "https"):
        return fetch_weights(str(pretrained_path))
    return os.fspath(pretrained_path)


# -- builders (semilearn's signature; get_net_builder passes in_channels) ------------------------

def _build(arch: str, num_classes: int, pretrained: bool, pretrained_path: Optional[str],
           in_channels: int, cifar_stem: bool, name: str, **kwargs: Any) -> ResNet:
    model = ResNet(arch, num_classes, in_channels=in_channels, cifar_stem=cifar_stem, **kwargs)
    if pretrained:  # like semilearn, pretrained_path is ignored unless pretrained is set
        path = resolve_pretrained_path(pretrained_path)
        if path is None:
            if cifar_stem:
                raise ValueError(f"{name}: there are no standard pretrained weights for the "
                                 "CIFAR stem; pass pretrained_path (a checkpoint of this net)")
            path = fetch_weights(weights_url(arch))
        load_pretrained(model, path)
    return model


def resnet18(num_classes: int, pretrained: bool = False, pretrained_path: Optional[str] = None,
             in_channels: int = 3, **kwargs: Any) -> ResNet:
    """ResNet-18 (ImageNet stem, 512-d features)."""
    return _build("resnet18", num_classes, pretrained, pretrained_path, in_channels, False,
                  "resnet18", **kwargs)


def resnet50(num_classes: int, pretrained: bool = False, pretrained_path: Optional[str] = None,
             in_channels: int = 3, **kwargs: Any) -> ResNet:
    """ResNet-50 (ImageNet stem, 2048-d features); replaces semilearn's ``resnet50``."""
    return _build("resnet50", num_classes, pretrained, pretrained_path, in_channels, False,
                  "resnet50", **kwargs)


def resnext50_32x4d(num_classes: int, pretrained: bool = False,
                    pretrained_path: Optional[str] = None, in_channels: int = 3,
                    **kwargs: Any) -> ResNet:
    """ResNeXt-50 32×4d (ImageNet stem, 2048-d features)."""
    return _build("resnext50_32x4d", num_classes, pretrained, pretrained_path, in_channels, False,
                  "resnext50_32x4d", **kwargs)


def cifar_resnet18(num_classes: int, pretrained: bool = False,
                   pretrained_path: Optional[str] = None, in_channels: int = 3,
                   **kwargs: Any) -> ResNet:
    """ResNet-18 with the CIFAR stem (3×3/1 conv, no max-pool; spec §6.3)."""
    return _build("resnet18", num_classes, pretrained, pretrained_path, in_channels, True,
                  "cifar_resnet18", **kwargs)


def cifar_resnext50(num_classes: int, pretrained: bool = False,
                    pretrained_path: Optional[str] = None, in_channels: int = 3,
                    **kwargs: Any) -> ResNet:
    """ResNeXt-50 32×4d with the CIFAR stem (3×3/1 conv, no max-pool; spec §6.3)."""
    return _build("resnext50_32x4d", num_classes, pretrained, pretrained_path, in_channels, True,
                  "cifar_resnext50", **kwargs)


# -- optimizer parameter groups ------------------------------------------------------------------

def head_lr_groups(model: nn.Module, lr: float, head_mult: float = 10.0,
                   weight_decay: float = 0.0, extra_heads: Sequence[nn.Module] = (),
                   head_names: Sequence[str] = ("classifier",),
                   skip_decay_1d: bool = False) -> List[Dict[str, Any]]:
    """Optimizer param groups: backbone at ``lr``, heads at ``head_mult × lr`` (spec §6.2).

    Heads are every submodule of ``model`` whose attribute name is in ``head_names`` (found
    through wrappers such as DDP or dm_ssl's ``WithMixHead``) plus ``extra_heads`` (e.g. a
    projector, inside ``model`` or not). Each parameter appears exactly once. With
    ``skip_decay_1d`` the 1-D parameters (BatchNorm, biases) get their own groups with
    weight decay 0. Groups carry a ``name`` key ('backbone', 'head', '*_no_decay').
    """
    heads = [m for n, m in model.named_modules() if n.rsplit(".", 1)[-1] in head_names]
    heads += list(extra_heads)
    if not heads:
        raise ValueError(f"head_lr_groups: no head module named {list(head_names)} in "
                         f"{type(model).__name__} and no extra_heads given")
    head_ids = {id(p) for m in heads for p in m.parameters()}
    seen: Set[int] = set()
    buckets: Dict[Tuple[bool, bool], List[nn.Parameter]] = {}
    params = list(model.parameters()) + [p for m in extra_heads for p in m.parameters()]
    for p in params:
        if id(p) in seen:
            continue
        seen.add(id(p))
        buckets.setdefault((id(p) in head_ids, skip_decay_1d and p.ndim <= 1), []).append(p)
    groups = []
    for is_head in (False, True):
        for no_decay in (False, True):
            ps = buckets.get((is_head, no_decay))
            if ps:
                groups.append({"params": ps, "lr": lr * (head_mult if is_head else 1.0),
                               "weight_decay": 0.0 if no_decay else weight_decay,
                               "name": ("head" if is_head else "backbone")
                               + ("_no_decay" if no_decay else "")})
    return groups


__all__ = ["LoadReport", "ResNet", "cached_weights", "cifar_resnet18", "cifar_resnext50",
           "fetch_weights",
           "head_lr_groups", "load_pretrained", "offline", "resolve_pretrained_path",
           "resnet18", "resnet50", "resnext50_32x4d", "weights_url"]
