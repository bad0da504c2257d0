"""``dm-ssl doctor [--config FILE]``: what this machine has, and whether a config's run would
start — before a week-long run finds out.

One table of :class:`Check` rows: the library versions, the devices (CUDA name, compute
capability, memory, bf16), and for a config its dataset (read by the very builder the run
calls, so *found* means the run reads it), its pretrained weights (torch hub / Hugging Face
caches), the free disk at ``save_dir`` against the estimated checkpoint size. A row whose
status is ``fail`` would stop the run: the command then exits 1.
"""

from __future__ import annotations

import os
import platform
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional

from dm_ssl.config import ConfigError

#: the packages a run imports, in the table's order
PACKAGES = ("torch", "torchvision", "semilearn", "timm", "huggingface_hub", "tensorboard")
#: what a checkpoint holds per parameter, in parameter-sized copies: the model, its EMA copy
#: (semilearn saves both) and SGD's momentum buffer
CHECKPOINT_COPIES = 3


@dataclass(frozen=True)
class Check:
    """One row: ``status`` is ``ok``, ``warn`` (the run starts, read the detail) or ``fail``
    (the run would stop)."""

    what: str
    status: str
    detail: str


def _version(package: str) -> Optional[str]:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return None


def environment() -> List[Check]:
    """Python, the packages' versions, and every device torch sees."""
    rows = [Check("python", "ok", f"{platform.python_version()} ({platform.machine()}, "
                                  f"{os.cpu_count()} CPU cores)")]
    for package in PACKAGES:
        v = _version(package)
        needed = package in ("torch", "torchvision", "semilearn")
        rows.append(Check(package, "ok" if v else ("fail" if needed else "warn"),
                          v or "not installed" + (" (needed)" if needed else "")))
    import torch

    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            p = torch.cuda.get_device_properties(i)
            with torch.cuda.device(i):
                bf16 = torch.cuda.is_bf16_supported()
            rows.append(Check(f"cuda:{i}", "ok", f"{p.name}, capability {p.major}.{p.minor}, "
                                                 f"{p.total_memory / 2**30:.1f} GiB, "
                                                 f"bf16 {'yes' if bf16 else 'no'}"))
    else:
        cuda = torch.version.cuda
        rows.append(Check("cuda", "warn", "no CUDA device" + (
            f" (torch built with CUDA {cuda})" if cuda else " (a CPU-only torch)")
            + ": runs use the CPU"))
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        rows.append(Check("mps", "ok", "Apple GPU available (device: mps)"))
    return rows


def _dataset(cfg: Dict[str, Any]) -> Check:
    from .prepare import build_datasets

    name = cfg["dataset"]
    with tempfile.TemporaryDirectory() as tmp:  # a fresh split, thrown away
        try:
            dsets, info = build_datasets(cfg, Path(tmp))
        except ConfigError as err:
            return Check(f"dataset {name}", "fail", str(err))
    sizes = ", ".join(f"{k} {len(v)}" for k, v in dsets.items() if v is not None)
    return Check(f"dataset {name}", "ok", f"{os.path.abspath(cfg.get('data_dir') or '.')}: "
                                          f"{info.num_classes} classes; {sizes}")


def _weights(cfg: Dict[str, Any]) -> Optional[Check]:
    """Where the run's pretrained weights come from, and whether they are there."""
    if not cfg.get("use_pretrain"):
        return None
    path = cfg.get("pretrained_path") or cfg.get("pretrain_path")
    net = str(cfg.get("net"))
    from dm_ssl.nets import resnet

    if path and "://" not in str(path):
        ok = os.path.isfile(path)
        return Check("weights", "ok" if ok else "fail",
                     f"{path}" + ("" if ok else ": not a file (pretrained_path)"))
    if path:
        url = str(path)
    elif net.startswith("timm/"):
        return _timm_weights(net.removeprefix("timm/"))
    else:
        try:
            url = resnet.weights_url(net)
        except ValueError as err:
            return Check("weights", "fail", f"net {net}: {err}")
    cached = resnet.cached_weights(url)
    name = os.path.basename(cached)
    if os.path.isfile(cached):
        return Check("weights", "ok", cached)
    if resnet.offline():
        return Check("weights", "fail", f"{name} is not in {os.path.dirname(cached)} and "
                                        f"HF_HUB_OFFLINE is set: copy {url} there")
    return Check("weights", "warn", f"{name} not cached yet: the run downloads {url} into "
                                    f"{os.path.dirname(cached)}")


def _timm_weights(model: str) -> Check:
    import timm
    from huggingface_hub import constants, try_to_load_from_cache

    if not timm.is_model(model):
        return Check("weights", "fail", f"net: timm has no model {model!r}")
    cfg = timm.models.get_pretrained_cfg(model)
    repo = getattr(cfg, "hf_hub_id", None) if cfg is not None else None
    if not repo:
        return Check("weights", "fail", f"timm/{model} has no Hugging Face Hub weights: pass "
                                        "pretrained_path")
    for fname in ("model.safetensors", "pytorch_model.bin"):
        hit = try_to_load_from_cache(repo, fname)
        if isinstance(hit, str):
            return Check("weights", "ok", hit)
    if constants.HF_HUB_OFFLINE:
        return Check("weights", "fail", f"{repo} is not in the Hugging Face cache "
                                        f"({constants.HF_HUB_CACHE}) and HF_HUB_OFFLINE is set")
    return Check("weights", "warn", f"{repo} not cached yet: the run downloads it into "
                                    f"{constants.HF_HUB_CACHE}")


def _disk(cfg: Dict[str, Any]) -> Check:
    from dm_ssl.nets import get_net_builder

    save_dir = Path(cfg.get("save_dir") or ".").absolute()
    existing = next(p for p in (save_dir, *save_dir.parents) if p.exists())
    free = shutil.disk_usage(existing).free
    try:
        net = get_net_builder(cfg["net"], bool(cfg.get("net_from_name")),
                              in_channels=int(cfg.get("in_channels", 3)),
                              **dict(cfg.get("net_options") or {}))(
            num_classes=cfg.get("num_classes") or 10, pretrained=False, pretrained_path=None)
    except Exception as err:  # the run itself will name the net's problem
        return Check("disk", "warn", f"{free / 2**30:.1f} GiB free at {existing}; the net "
                                     f"could not be built to size a checkpoint ({err})")
    size = CHECKPOINT_COPIES * sum(p.numel() * p.element_size() for p in net.parameters())
    # a run keeps latest_model.pth, its .prev and model_best.pth
    need = 3 * size
    status = "ok" if free > 2 * need else ("warn" if free > need else "fail")
    return Check("disk", status, f"{free / 2**30:.1f} GiB free at {existing}; a checkpoint "
                                 f"≈ {size / 2**20:.1f} MiB ({cfg['net']}), a run keeps 3")


def config_checks(cfg: Dict[str, Any]) -> List[Check]:
    """The rows for a validated config: dataset, weights, disk."""
    rows = [_dataset(cfg)]
    weights = _weights(cfg)
    if weights is not None:
        rows.append(weights)
    rows.append(_disk(cfg))
    return rows


def render(rows: List[Check]) -> str:
    """The rows as a Markdown table (what ``dm-ssl doctor`` prints)."""
    lines = ["| check | status | detail |", "|---|---|---|"]
    lines += [f"| {r.what} | {r.status} | {r.detail.replace('|', '/')} |" for r in rows]
    return "\n".join(lines)


def doctor(cfg: Optional[Dict[str, Any]] = None) -> List[Check]:
    """Every row: the environment, then the config's (when given)."""
    return environment() + (config_checks(cfg) if cfg is not None else [])
