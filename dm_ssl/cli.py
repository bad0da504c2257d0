"""``dm-ssl``: train and evaluate semilearn (USB) algorithms and their DM variants.

    dm-ssl train --config FILE [--data-dir DIR] [--save-dir DIR] [--device cpu|cuda]
                 [--set key=value ...]
    dm-ssl eval  --checkpoint FILE [--data-dir DIR] [--device cpu|cuda]
    dm-ssl sweep TABLE --runs-dir DIR [--seeds ...] [--only PATTERN] [--launcher local|slurm]
                 [--dry-run] [--data-dir DIR] [--device ...] [--set key=value ...]
    dm-ssl report RUNS_DIR... [--table NAME] [--format md|csv|latex] [--plots DIR]

Configs are USB-style YAML read with PyYAML; ``--set`` overrides the file (values parsed as
YAML: ``--set dm_eta=0.5 --set dm_head=shared``). Unknown keys and bad values stop the run with
one clear message. A run lives in ``<save_dir>/<save_name>/``: the resolved ``config.yaml``, the
label split, checkpoints, ``log.txt``, tensorboard events and ``results.json`` (best *and*
final accuracy; USB reports only the best).
"""

from __future__ import annotations

import argparse
import difflib
import json
import math
import os
import random
import shutil
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import yaml

#: Keys dm_ssl reads on top of semilearn's own arguments and the algorithm's.
DM_SSL_KEYS: Dict[str, Any] = {
    "device": None,            # cpu | cuda | cuda:1 ...; default: cuda when available
    "channels_last": True,     # 1.65x faster WRN-28-2 steps on CPU, same loss (bench_step.py)
    "progress": True,          # a progress bar with the live losses
    "verbose": False,          # semilearn's log lines on the terminal too (always in log.txt)
    "sync_bn": False,          # torchrun: BN statistics over all processes (SyncBatchNorm)
    "augment_on": "loader",    # loader | device: the training images and their augmentation
                               # on the device (dm_ssl.data.device_data; cifar10/100, digits,
                               # supervised tinyimagenet)
    "dataset_options": {},     # passed to the dataset reader (digits: size, channels, ...)
    "hflip": None,             # horizontal flip in the weak/strong views (default per dataset)
    "in_channels": 3,          # input channels of dm_ssl's own nets (small_cnn)
    # fine-grained transfer (cub200, stanford_cars, fgvc_aircraft; spec §6.2)
    "label_percent": None,     # labeled share per class (15, 30, 50); replaces num_labels
    "label_list": None,        # a Self-Tuning image_list/train_XX.txt of your own
    "resize": 256,             # Resize before the 224 crop
    "ten_crop": False,         # 10-crop evaluation
    "randaugment": True,       # RandAugment in the strong views
    "randaugment_views": "strong",  # strong | all (official Self-Tuning: all four views)
    "randaugment_n": 3,        # RandAugment(n, m): semilearn's 224-px setting; Self-Tuning 2
    "randaugment_m": 10,
    "pretrained_path": None,   # ImageNet weights file (else the torch hub / timm cache)
    # supervised / data-efficient mixup (supervised_mixup; spec §6.3)
    "subset_percent": None,    # class-balanced share of the training labels (15, 30, 50)
    # ImageNet recipes (PyTorch-style, DeiT, RSB A3; spec §7): timm's transforms
    "auto_augment": None,      # timm policy, e.g. rand-m9-mstd0.5-inc1 (DeiT)
    "reprob": 0.0,             # random erasing probability (DeiT 0.25)
    "interpolation": "bilinear",  # resize interpolation (DeiT / RSB: bicubic)
    "crop_pct": None,          # test-time centre-crop ratio (default 0.875; RSB A3 0.95)
    "eval_img_size": None,     # test side when it differs from img_size (RSB A3: 224)
    "net_options": {},         # extra net keywords, e.g. drop_path_rate for timm models
    # end-of-training evaluation (Figure A1): mixed-sample top-1/top-2 of the EMA weights on the
    # evaluation set mixed at λ = 0.5 by each named mixer, into results.json
    "eval_mixed": "",          # comma-separated mixer names, e.g. "mixup,cutmix"
    # run records (dm_ssl.records)
    "experiment": {},          # the table cell a run belongs to (set by dm-ssl sweep)
}
#: supervised-only transform keys and their defaults (refused elsewhere, never silently unused)
AUGMENT_KEYS = ("auto_augment", "reprob", "interpolation", "crop_pct", "eval_img_size")
#: fine-grained transfer transform keys (refused for other datasets)
FINEGRAINED_KEYS = ("randaugment_views", "randaugment_n", "randaugment_m")
SUPERVISED = ("supervised_mixup", "fullysupervised", "supervised")
#: config keys holding paths: config.yaml records them absolute
PATH_KEYS = ("data_dir", "pretrained_path", "pretrain_path", "label_list", "load_path")
FINEGRAINED = ("cub200", "stanford_cars", "fgvc_aircraft")
_CKPT = "latest_model.pth"


class ConfigError(ValueError):
    """A config that cannot run; the message names the key or file."""


# -- config ----------------------------------------------------------------------------------
def load_config(path: str) -> Dict[str, Any]:
    try:
        with open(path) as fh:
            cfg = yaml.safe_load(fh)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} not found") from None
    except IsADirectoryError:
        raise ConfigError(f"--config {path} is a directory, not a YAML file") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"config file {path} is not valid YAML: {err}") from None
    if not isinstance(cfg, dict):
        raise ConfigError(f"config file {path} must hold a mapping of key: value")
    return cfg


def apply_overrides(cfg: Dict[str, Any], pairs: Sequence[str]) -> Dict[str, Any]:
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set expects key=value, got {pair!r}")
        try:
            cfg[key.strip()] = yaml.safe_load(value) if value else ""
        except yaml.YAMLError:
            cfg[key.strip()] = value
    return cfg


def known_keys(algorithm: str) -> Dict[str, Any]:
    """Every key a config for ``algorithm`` may hold, with its default."""
    from dm_ssl.algorithms import make_args

    return {**vars(make_args({"algorithm": algorithm})), **DM_SSL_KEYS}


def validate(cfg: Dict[str, Any]) -> Dict[str, Any]:
    """Fill defaults, refuse unknown keys and badly typed values (naming the key)."""
    import dm_ssl.algorithms  # noqa: F401  (registers the *_dm algorithms)

    if "algorithm" not in cfg:
        raise ConfigError("config: missing key 'algorithm'")
    try:
        defaults = known_keys(cfg["algorithm"])
    except ValueError as err:
        raise ConfigError(str(err)) from None
    unknown = sorted(set(cfg) - set(defaults))
    if unknown:
        hints = [f"{k} (did you mean {m[0]}?)" if (m := difflib.get_close_matches(k, defaults, 1))
                 else k for k in unknown]
        raise ConfigError(f"unknown config key(s): {', '.join(hints)}")
    for key, value in list(cfg.items()):
        cfg[key] = _coerce(key, value, defaults[key])
    defaults["use_tensorboard"] = True  # semilearn defaults to off; dm-ssl logs by default
    defaults["img_size"] = None  # the dataset's own size (semilearn's 32 suits CIFAR only)
    out = {**defaults, **cfg}  # fully resolved: config.yaml records every value used
    if "save_name" not in cfg:
        out["save_name"] = f"{cfg['algorithm']}_{out['dataset']}"
    if out["dataset"] in FINEGRAINED:
        pct = out["label_percent"]
        if isinstance(pct, bool) or not isinstance(pct, (int, float)) or not 0 < pct <= 100:
            raise ConfigError(f"config key 'label_percent' must be in (0, 100] for "
                              f"{out['dataset']}, got {out['label_percent']!r}")
        if pct == 100 and out["algorithm"] not in SUPERVISED and not out["label_list"]:
            raise ConfigError(f"config key 'label_percent': 100 labels every training image "
                              f"of {out['dataset']}, which leaves {out['algorithm']} no "
                              "unlabeled images; use a share below 100 (the paper: 15, 30, 50), "
                              "or supervised_mixup for fully supervised training")
    if out["algorithm"] not in SUPERVISED or out["dataset"] in FINEGRAINED:
        for key in AUGMENT_KEYS:
            if out[key] != DM_SSL_KEYS[key]:
                raise ConfigError(f"config key {key!r} applies to supervised training on "
                                  "cifar10/100, tinyimagenet and imagenet only")
    if out["dataset"] not in FINEGRAINED:
        for key in FINEGRAINED_KEYS:
            if out[key] != DM_SSL_KEYS[key]:
                raise ConfigError(f"config key {key!r} applies to the fine-grained transfer "
                                  f"datasets ({', '.join(FINEGRAINED)}) only")
    from dm_ssl.data.finegrained import RA_VIEWS

    if out["randaugment_views"] not in RA_VIEWS:
        raise ConfigError(f"config key 'randaugment_views' must be one of {', '.join(RA_VIEWS)}, "
                          f"got {out['randaugment_views']!r}")
    for key in ("randaugment_n", "randaugment_m"):
        if out[key] < 0:
            raise ConfigError(f"config key {key!r} must be >= 0, got {out[key]!r}")
    out["eval_mixed"] = _mixer_list("eval_mixed", out["eval_mixed"])
    _check_learned_eval(out)
    for key in ("net_options", "experiment"):
        if not isinstance(out[key], dict):
            raise ConfigError(f"config key {key!r} must be a mapping, got {out[key]!r}")
    sub = out["subset_percent"]
    if sub is not None and (isinstance(sub, bool) or not isinstance(sub, (int, float))
                            or not 0 < sub <= 100):
        raise ConfigError(f"config key 'subset_percent' must be in (0, 100], got {sub!r}")
    if out["pretrained_path"] is not None:  # dm_ssl's name for semilearn's pretrain_path
        out.update(use_pretrain=True, pretrain_path=str(out["pretrained_path"]))
    for key in ("num_labels", "num_train_iter", "batch_size"):
        if key in out and (not isinstance(out[key], int) or out[key] <= 0):
            raise ConfigError(f"config key {key!r} must be a positive integer, got {out[key]!r}")
    if out["num_train_iter"] % out["epoch"]:
        raise ConfigError(f"config key 'epoch' ({out['epoch']}) must divide num_train_iter "
                          f"({out['num_train_iter']}): semilearn runs num_train_iter // epoch "
                          "iterations per epoch and would stop early")
    if out["augment_on"] not in ("loader", "device"):
        raise ConfigError(f"config key 'augment_on' must be loader or device, got "
                          f"{out['augment_on']!r}")
    if out["augment_on"] == "device":
        _check_device_augment(out)
    check_ranges(out)
    check_device(out.get("device"), "device")
    return out


def _check_device_augment(cfg: Dict[str, Any]) -> None:
    """``augment_on: device`` only where the device path does the loader's transforms: the
    classic-CV SSL sets, and supervised training on the padded-crop sets at their own size
    (dm_ssl.data.device_data); everything else is refused naming what stands in the way."""
    why = None
    if cfg["dataset"] in FINEGRAINED:
        why = (f"the fine-grained set {cfg['dataset']} is resized and cropped per image "
               "(RandomResizedCrop 224)")
    elif cfg["algorithm"] in SUPERVISED:
        from dm_ssl.data.supervised import SUPERVISED_DATASETS, device_augment_refusal

        if cfg["dataset"] in SUPERVISED_DATASETS:  # an unknown one is refused when it is read
            why = device_augment_refusal(cfg["dataset"], cfg.get("img_size"),
                                         **{k: cfg[k] for k in AUGMENT_KEYS})
    if why is not None:
        raise ConfigError(f"config key 'augment_on': device cannot run this config: {why}; "
                          "use augment_on=loader (device: the SSL sets cifar10, cifar100, "
                          "digits, and supervised cifar10, cifar100, tinyimagenet, digits at "
                          "their own size without auto_augment / reprob)")


#: key -> (low, high, low_open, high_open): values outside are refused before anything is built
RANGES: Dict[str, tuple] = {
    "p_cutoff": (0.0, 1.0, True, False),        # a threshold above 1 masks every pseudo-label
    "dm_p_mix_cutoff": (0.0, 1.0, False, False),
    "ema_m": (0.0, 1.0, False, False),
    "momentum": (0.0, 1.0, False, True),
    "lr": (0.0, math.inf, True, True),
    "weight_decay": (0.0, math.inf, False, True),
    "ulb_loss_ratio": (0.0, math.inf, False, True),
    "dm_w_ll": (0.0, math.inf, False, True),
    "dm_w_lu": (0.0, math.inf, False, True),
    "eval_batch_size": (1, math.inf, False, True),
    "num_eval_iter": (1, math.inf, False, True),
    "num_log_iter": (1, math.inf, False, True),
    "epoch": (1, math.inf, False, True),
}


def shorten_schedule(file_cfg: Dict[str, Any], cfg: Dict[str, Any],
                     overridden: set) -> Tuple[Dict[str, Any], Optional[str]]:
    """``--set num_train_iter=N`` on a config written for a longer run: the ``epoch`` count
    and the evaluation / log intervals the user left at the file's values are fitted to ``N``
    (``epoch`` keeps the file's iterations per epoch where it can, and divides ``N``; an
    interval longer than the run becomes ``N``). Returns the config and a one-line note, or
    None when nothing changed. Values the user set themselves are never touched."""
    n = cfg.get("num_train_iter")
    if ("num_train_iter" not in overridden or isinstance(n, bool) or not isinstance(n, int)
            or n <= 0):
        return cfg, None
    out, changed = dict(cfg), []
    epoch, file_n = file_cfg.get("epoch"), file_cfg.get("num_train_iter")
    if ("epoch" not in overridden and isinstance(epoch, int) and epoch > 0
            and isinstance(file_n, int) and file_n > 0 and n % epoch):
        per_epoch = max(1, file_n // epoch)
        fitted = max(1, min(epoch, n // per_epoch))
        while n % fitted:
            fitted -= 1
        out["epoch"] = fitted
        changed.append(f"epoch={fitted}")
    for key in ("num_eval_iter", "num_log_iter"):
        value = out.get(key)
        if (key not in overridden and isinstance(value, int) and not isinstance(value, bool)
                and value > n):
            out[key] = n
            changed.append(f"{key}={n}")
    if not changed:
        return cfg, None
    return out, (f"num_train_iter={n} is shorter than the config's run: using "
                 f"{', '.join(changed)} (set them with --set to choose otherwise)")


def check_ranges(cfg: Dict[str, Any]) -> None:
    """Numbers in their ranges (:data:`RANGES`), ``uratio`` >= 1 for algorithms that read
    unlabeled data, and an optimizer the algorithm can build; one error naming the key."""
    for key, (lo, hi, lo_open, hi_open) in RANGES.items():
        value = cfg.get(key)
        if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        bad = (math.isnan(value) or (value <= lo if lo_open else value < lo)
               or (value >= hi if hi_open else value > hi))
        if bad:
            interval = f"{'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"
            raise ConfigError(f"config key {key!r} must be in {interval}, got {value!r}")
    if cfg["algorithm"] not in SUPERVISED and "uratio" in cfg and not (
            isinstance(cfg["uratio"], int) and cfg["uratio"] >= 1):
        raise ConfigError(f"config key 'uratio' must be an integer >= 1 for {cfg['algorithm']} "
                          f"(unlabeled samples per labeled one), got {cfg['uratio']!r}")
    optim = cfg.get("optim")
    if optim is not None and optim not in ("SGD", "AdamW"):
        if cfg["algorithm"] != "supervised_mixup":
            raise ConfigError(f"config key 'optim' must be SGD or AdamW for {cfg['algorithm']} "
                              f"(semilearn's optimizers), got {optim!r}")
        from timm.optim import list_optimizers

        if str(optim).lower() not in list_optimizers():
            raise ConfigError(f"config key 'optim': unknown optimizer {optim!r}; SGD, AdamW or a "
                              "timm optimizer (timm.optim.list_optimizers(): adamw, lamb, lars, "
                              "...)")


def check_device(device: Optional[str], key: str) -> None:
    """A CUDA device that is there (``device`` / ``--device``); say what there is instead."""
    if device is None or not str(device).startswith("cuda"):
        return
    import torch

    n = torch.cuda.device_count() if torch.cuda.is_available() else 0
    index = str(device).partition(":")[2]
    if n == 0 or (index.isdigit() and int(index) >= n):
        have = f"{n} CUDA device(s)" if n else "no CUDA device (torch.cuda.is_available() is False)"
        raise ConfigError(f"{key} {device!r} is not available: this machine has {have}; "
                          "use device=cpu" + (f" or cuda:0..{n - 1}" if n else ""))


def _mixer_list(key: str, value: Any) -> str:
    """A comma-separated list (or a YAML list) of known mixer names, normalised to a string."""
    from dm_ssl.mixers import MIXERS

    names = value if isinstance(value, (list, tuple)) else str(value or "").split(",")
    names = [str(n).strip() for n in names if str(n).strip()]
    unknown = [n for n in names if n not in MIXERS]
    if unknown:
        raise ConfigError(f"config key {key!r}: unknown mixer(s) {', '.join(unknown)} "
                          f"(known: {', '.join(sorted(MIXERS))})")
    return ",".join(dict.fromkeys(names))


def _check_learned_eval(cfg: Dict[str, Any]) -> None:
    """A learned mixer's eval masks come from the run's own trained Mix Block: refuse, before
    training, an ``eval_mixed`` learned mixer that the run does not train."""
    from dm_ssl.mixers import MIXERS

    trained = {n.strip() for key in ("mix_mixers", "dm_mixer")
               for n in str(cfg.get(key) or "").split(",")}
    missing = [n for n in filter(None, cfg["eval_mixed"].split(","))
               if getattr(MIXERS[n], "learned", False) and n not in trained]
    if missing:
        raise ConfigError(f"config key 'eval_mixed': {', '.join(missing)} is a learned mixer and "
                          "this run does not train one (its masks come from the run's own Mix "
                          "Block)")


def _coerce(key: str, value: Any, default: Any) -> Any:
    """Check ``value`` against the type of ``default``; accept numeric strings (PyYAML reads
    ``3e-2`` as a string) and integral floats for integer keys."""
    if value is None or default is None:
        return value
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
        raise ConfigError(f"config key {key!r} must be true/false, got {value!r}")
    if isinstance(default, (int, float)):
        try:
            number = float(value) if isinstance(value, str) else value
        except ValueError:
            number = value
        if isinstance(number, bool) or not isinstance(number, (int, float)):
            raise ConfigError(f"config key {key!r} must be a number, got {value!r}")
        if isinstance(default, int):
            if float(number) != int(number):
                raise ConfigError(f"config key {key!r} must be an integer, got {value!r}")
            return int(number)
        return float(number)
    return value


def set_seed(seed: int) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


# -- train -----------------------------------------------------------------------------------
class RunIncompleteError(RuntimeError):
    """The training loop ended before ``num_train_iter``."""


class RunFailedError(RuntimeError):
    """An error while the run trained or evaluated (an unreadable image mid-epoch, an error
    inside semilearn or torch): ``results.json`` says failed with the reason; the checkpoints
    already written stay as they were."""


def one_line(err: BaseException) -> str:
    """The error's message on one line. An error raised in a data-loader worker reaches the
    main process as ``Caught DatasetError in DataLoader worker process 0. Original Traceback
    ...``: its last line is the worker's own message."""
    text = str(err)
    if text.startswith("Caught ") and "Original Traceback" in text:
        last = [line for line in text.splitlines() if line.strip()][-1].strip()
        head, sep, message = last.partition(": ")
        text = message if sep and " " not in head else last
    return text


class RunStopped(RuntimeError):
    """SIGTERM / SIGUSR1 / SIGUSR2 (a Slurm preemption or time limit, ``kill``): the run saved
    its checkpoint at the end of the step and stopped; ``--set resume=true`` continues it."""

    def __init__(self, it: int, signum: int) -> None:
        import signal

        self.it, self.signal = it, signal.Signals(signum).name
        super().__init__(f"stopped by {self.signal} after iteration {it}; the checkpoint is "
                         "saved, --set resume=true continues the run exactly")


#: exit status of a run stopped by a signal after saving (EX_TEMPFAIL: try again)
EXIT_STOPPED = 75
STOP_SIGNALS = ("SIGTERM", "SIGUSR1", "SIGUSR2")


def _stop_hook(run_dir: Path):
    """Stop at the end of the step a stop signal arrived in, after saving the checkpoint.
    Under torchrun the processes agree first (any one signalled stops all at the same step)."""
    import signal

    from semilearn.core.hooks import Hook

    class StopHook(Hook):
        def before_run(self, algorithm):
            self.signum = 0

            def handler(signum, frame):
                self.signum = signum
            self.previous = {}
            for name in STOP_SIGNALS:
                sig = getattr(signal, name, None)
                if sig is not None:
                    try:
                        self.previous[sig] = signal.signal(sig, handler)
                    except ValueError:  # not the main thread: no handlers, no graceful stop
                        pass

        def after_train_step(self, algorithm):
            signum = self.signum
            if algorithm.distributed:
                import torch
                import torch.distributed as dist

                flag = torch.tensor([signum], device=algorithm.device)
                dist.all_reduce(flag, op=dist.ReduceOp.MAX)
                signum = int(flag.item())
            if not signum:
                return
            done = algorithm.it + 1
            if getattr(algorithm, "_latest_saved_it", None) != done:
                algorithm.save_model("latest_model.pth", str(run_dir))
            raise RunStopped(done, signum)

        def after_run(self, algorithm):
            for sig, old in self.previous.items():
                signal.signal(sig, old)

    return StopHook()


def _progress_hook(total: int):
    from semilearn.core.hooks import Hook
    from tqdm import tqdm

    class ProgressHook(Hook):
        def before_run(self, algorithm):
            self.bar = tqdm(total=total, initial=algorithm.it, desc=algorithm.args.save_name,
                            dynamic_ncols=True, file=sys.stderr)

        def after_train_step(self, algorithm):
            logs = algorithm.log_dict
            shown = {k.split("/")[-1]: f"{v:.3f}" for k, v in logs.items()
                     if k.endswith("_loss") or k.endswith("ratio") or k.endswith("top-1-acc")}
            self.bar.set_postfix(shown, refresh=False)
            self.bar.update(1)

        def after_run(self, algorithm):
            self.bar.close()

    return ProgressHook()


def init_distributed(cfg: Dict[str, Any]) -> Dict[str, Any]:
    """Under ``torchrun`` (WORLD_SIZE > 1): one process per device, DDP, NCCL or gloo.

    ``batch_size`` stays the global labeled batch (as in USB's configs); each process takes
    ``batch_size / world_size`` of it."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return {**cfg, "distributed": False}
    import torch
    import torch.distributed as dist

    rank, local_rank = int(os.environ["RANK"]), int(os.environ["LOCAL_RANK"])
    device = cfg.get("device") or ("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda"):
        torch.cuda.set_device(local_rank)
        device = f"cuda:{local_rank}"
    if cfg["batch_size"] % world:
        raise ConfigError(f"config key 'batch_size' ({cfg['batch_size']}) must be divisible by "
                          f"the number of processes ({world})")
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    return {**cfg, "distributed": True, "rank": rank, "world_size": world, "gpu": local_rank,
            "device": device, "batch_size": cfg["batch_size"] // world,
            "progress": cfg.get("progress", True) and rank == 0}


def _is_main(cfg: Dict[str, Any]) -> bool:
    return not cfg.get("distributed") or cfg.get("rank", 0) == 0


def prepare_run(cfg: Dict[str, Any], record: bool = True):
    """Datasets, logger, tensorboard and the algorithm for a validated config. ``record``
    False (``dm-ssl eval``): no log.txt or tensorboard file is added to the run directory."""
    from semilearn.core.utils import TBLog, get_logger

    from dm_ssl.algorithms import build_algorithm
    from dm_ssl.data import DatasetError, build_ssl_datasets

    run_dir = Path(cfg["save_dir"]) / cfg["save_name"]
    barrier = None
    if cfg.get("distributed"):
        import torch.distributed as dist

        barrier = dist.barrier
        if not _is_main(cfg):  # rank 0 writes the split first, the others read it
            barrier()
    try:
        if cfg["algorithm"] in SUPERVISED and cfg["dataset"] not in FINEGRAINED:
            from dm_ssl.data import build_supervised_datasets

            sets, info = build_supervised_datasets(
                cfg["dataset"], cfg.get("data_dir"), run_dir,
                subset_percent=cfg.get("subset_percent"), seed=cfg["seed"],
                img_size=cfg.get("img_size"), algorithm=cfg["algorithm"],
                **{k: cfg[k] for k in AUGMENT_KEYS if k in cfg})
            dsets = {"train_lb": sets["train"], "eval": sets["eval"]}
        elif cfg["dataset"] in FINEGRAINED:
            from dm_ssl.data import build_finegrained_ssl_datasets

            dsets, info = build_finegrained_ssl_datasets(
                cfg["dataset"], cfg.get("data_dir"), cfg["label_percent"], cfg["seed"], run_dir,
                algorithm=cfg["algorithm"], label_list=cfg.get("label_list"),
                resize=cfg["resize"], crop=cfg["img_size"] or 224, ten_crop=cfg["ten_crop"],
                randaugment=cfg["randaugment"],
                **{k: cfg[k] for k in FINEGRAINED_KEYS if k in cfg},
                **(cfg.get("dataset_options") or {}))
        else:
            dsets, info = build_ssl_datasets(
                cfg["dataset"], cfg.get("data_dir"), cfg["num_labels"], cfg["seed"], run_dir,
                algorithm=cfg["algorithm"], include_lb_to_ulb=cfg.get("include_lb_to_ulb", True),
                img_size=cfg.get("img_size"), crop_ratio=cfg.get("crop_ratio", 0.875),
                hflip=cfg.get("hflip"), **(cfg.get("dataset_options") or {}))
        if cfg["algorithm"] in SUPERVISED:
            # semilearn's trainer wants an unlabeled set; supervised algorithms never read it
            dsets["train_ulb"] = dsets["train_lb"]
    except DatasetError as err:
        raise ConfigError(str(err)) from None
    finally:
        if barrier is not None and _is_main(cfg):
            barrier()
    if "num_classes" in cfg and cfg["num_classes"] != info.num_classes:
        raise ConfigError(f"config key 'num_classes' is {cfg['num_classes']} but dataset "
                          f"{info.name!r} has {info.num_classes} classes")
    cfg = {**cfg, "num_classes": info.num_classes, "img_size": info.img_size}
    if record:
        logger = get_logger(cfg["save_name"], str(run_dir))
    else:  # a logger of its own without a file (get_logger adds one per call to a name)
        logger = get_logger(f"{cfg['save_name']}.eval")
    # semilearn's per-evaluation lines go to log.txt; the terminal shows them with --verbose
    logger.propagate = bool(cfg.get("verbose"))
    tb_log = TBLog(str(run_dir), "tensorboard",
                   use_tensorboard=record and bool(cfg["use_tensorboard"]) and _is_main(cfg))
    import contextlib
    import io

    # semilearn print()s while building (SoftMatch: its p_target tensor): into the log, so
    # stdout keeps only dm-ssl's one JSON line
    with contextlib.redirect_stdout(io.StringIO()) as printed:
        alg = build_algorithm(cfg, dsets, tb_log, logger)
    for line in filter(None, printed.getvalue().splitlines()):
        logger.info(line)
    return alg, info, run_dir


def _checkpoints(ckpt: Path) -> List[Path]:
    """The resume candidates, newest first: the checkpoint and the one kept before it."""
    from dm_ssl.algorithms.driver import PREVIOUS_SUFFIX

    return [ckpt, ckpt.with_name(ckpt.name + PREVIOUS_SUFFIX)]


def resume_run(alg: Any, ckpt: Path) -> Path:
    """Load the newest readable checkpoint of ``ckpt`` and its predecessor into ``alg``.

    A truncated or corrupt latest checkpoint (a crash or a full disk while it was written
    without dm_ssl's atomic save, a copy cut short) is reported and the previous one is used;
    a checkpoint that reads but does not fit the run is refused as it is."""
    from dm_ssl.algorithms import CorruptCheckpointError

    partial = ckpt.with_name(ckpt.name + ".tmp")
    if partial.exists():  # a save killed while writing: never a checkpoint, only disk used
        partial.unlink()
        alg.print_fn(f"removed {partial} (a checkpoint write that did not finish)")
    damaged: List[str] = []
    for path in _checkpoints(ckpt):
        if not path.exists():
            continue
        try:
            alg.load_model(str(path))
        except CorruptCheckpointError as err:
            damaged.append(str(err))
            continue
        for msg in damaged:
            print(f"dm-ssl: warning: {msg}; resuming from {path} (iteration {alg.it})",
                  file=sys.stderr)
        return path
    if damaged:
        raise ConfigError("resume: no readable checkpoint: " + "; ".join(damaged))
    raise ConfigError(f"resume: no checkpoint at {ckpt}")


#: keys a resumed run must share with the run it continues (they shape its model, data or
#: method); others (lr, num_train_iter, logging) may change, and config.yaml records them
RESUME_KEYS = ("algorithm", "dataset", "net", "net_options", "seed", "num_labels",
               "label_percent", "label_list", "subset_percent", "uratio", "batch_size",
               "in_channels", "dataset_options")
RESUME_PREFIXES = ("dm_", "mix_", "st_")


def check_resume_config(cfg: Dict[str, Any], run_dir: Path) -> None:
    """Refuse a resume whose config differs from the run's ``config.yaml`` in a key that
    shapes the run, naming the keys (before anything is built or written)."""
    path = run_dir / "config.yaml"
    if not path.is_file():
        return
    try:
        saved = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError):
        return  # unreadable record: the checkpoint check still guards the resume
    saved = _absolute_paths(saved)  # older runs recorded paths as typed
    keys = [k for k in cfg if k in RESUME_KEYS or k.startswith(RESUME_PREFIXES)]
    diff = [f"{k}: {saved.get(k)!r} -> {cfg[k]!r}" for k in keys
            if k in saved and saved[k] != cfg[k]]
    if diff:
        raise ConfigError(f"resume: the config differs from the run's {path} in "
                          f"{'; '.join(diff)}; resume with the run's own values or start a new "
                          "run (another save_name)")


def _first_missing(path: Path) -> Optional[Path]:
    """The outermost folder of ``path`` that does not exist yet (None: it all exists)."""
    path = path.absolute()
    if path.exists():
        return None
    while not path.parent.exists():
        path = path.parent
    return path


def _remove_new_run_dir(run_dir: Path, created: Path) -> None:
    """Remove a refused new run's directory, and the folders above it that this run created
    while they are empty (another run may have started in them meanwhile)."""
    run_dir, created = run_dir.absolute(), created.absolute()
    shutil.rmtree(run_dir, ignore_errors=True)
    folder = run_dir.parent
    while folder != created.parent and created in (folder, *folder.parents):
        try:
            folder.rmdir()
        except OSError:  # not empty: someone else's
            break
        folder = folder.parent


def _write_results(run_dir: Path, cfg: Dict[str, Any], info: Any, **fields: Any) -> None:
    from dm_ssl.records import RESULTS_FILE, atomic_json

    if _is_main(cfg):
        atomic_json(run_dir / RESULTS_FILE, {
            "algorithm": cfg["algorithm"], "dataset": info.name, "net": cfg.get("net"),
            "num_labels": info.num_labels, "seed": cfg["seed"],
            "experiment": cfg.get("experiment") or {}, **fields})


def _absolute_paths(cfg: Dict[str, Any]) -> Dict[str, Any]:
    """``cfg`` with its :data:`PATH_KEYS` made absolute (from the current directory)."""
    return {**cfg, **{k: os.path.abspath(os.path.expanduser(cfg[k])) for k in PATH_KEYS
                      if isinstance(cfg.get(k), str) and cfg[k]}}


def _fail(run_dir: Path, cfg: Dict[str, Any], info: Any, alg: Any, err: Exception) -> None:
    """Record a run that failed while training or evaluating, then raise
    :class:`RunFailedError` (exit 1, one line) from ``err``."""
    reason = f"{type(err).__name__}: {one_line(err)}"
    try:  # best effort: the disk may be the problem
        _write_results(run_dir, cfg, info, status="failed", reason=reason, iterations=alg.it)
    except OSError:
        pass
    if any(p.exists() for p in _checkpoints(run_dir / _CKPT)):
        then = ("the checkpoints are kept: fix the cause, then resume with --set resume=true")
    else:
        then = "no checkpoint was written yet: fix the cause, then run the same command again"
    raise RunFailedError(f"{one_line(err)} (at iteration {alg.it}; results.json says failed, "
                         f"{then})") from err


def train(cfg: Dict[str, Any]) -> Dict[str, Any]:
    from dm_ssl import records

    cfg = _absolute_paths(validate(cfg))  # config.yaml records them: eval from any directory
    run_dir = Path(cfg["save_dir"]) / cfg["save_name"]
    ckpt = Path(cfg.get("load_path") or run_dir / _CKPT)
    if cfg.get("resume") and not any(p.exists() for p in _checkpoints(ckpt)):
        raise ConfigError(f"resume: no checkpoint at {ckpt}")
    if not cfg.get("resume") and any(p.exists() for p in _checkpoints(run_dir / _CKPT)):
        raise ConfigError(f"{run_dir} already holds a run (checkpoints, results): pass "
                          "--set resume=true to continue it, or choose another save_name")
    if cfg.get("resume"):
        check_resume_config(cfg, run_dir)
    resolved = dict(cfg)  # what config.yaml records: the user's (global) settings
    created = _first_missing(run_dir)  # removed again if the run is refused while building
    cfg = init_distributed(cfg)
    if cfg.get("sync_bn") and cfg["distributed"] and not str(cfg["device"]).startswith("cuda"):
        raise ConfigError(f"config key 'sync_bn': torch's SyncBatchNorm runs on CUDA devices "
                          f"only (device is {cfg['device']}); leave it false on CPU")
    set_seed(cfg["seed"])
    try:
        alg, info, run_dir = prepare_run(cfg)
    except BaseException:
        # a bad net, mixer, loss or weights file shows only while building: a new run that
        # never started leaves no directory behind (an existing one is never removed)
        if created is not None and _is_main(cfg):
            _remove_new_run_dir(run_dir, created)
        raise
    resumed_from = None
    if cfg.get("resume"):  # before anything of the run's record changes: a refusal keeps it
        resumed_from = str(resume_run(alg, ckpt))
        if _is_main(cfg):
            print(f"dm-ssl: resumed {run_dir} from {Path(resumed_from).name} at iteration "
                  f"{alg.it} of {alg.num_train_iter}", file=sys.stderr)
    if _is_main(cfg):
        with open(run_dir / "config.yaml", "w") as fh:
            yaml.safe_dump(resolved, fh, sort_keys=False)
        if resumed_from:
            records.truncate_metrics(run_dir, alg.it)
        else:
            (run_dir / records.METRICS_FILE).unlink(missing_ok=True)
        # num_labels as the data has it (supervised runs: the training (sub)set's size)
        records.record_start(run_dir, {**cfg, "num_labels": info.num_labels}, alg.device,
                             resumed_from=resumed_from, start_it=alg.it)
        alg.register_hook(records.metrics_hook(run_dir, alg.num_log_iter, alg.num_eval_iter),
                          "MetricsHook", "LOWEST")
    if cfg.get("progress", True):
        alg.register_hook(_progress_hook(alg.num_train_iter), "ProgressHook", "LOWEST")
    alg.register_hook(_stop_hook(run_dir), "StopHook", "LOWEST")
    from dm_ssl.algorithms import CheckpointWriteError, NonFiniteLossError

    try:
        alg.train()
    except RunStopped as err:
        _write_results(run_dir, cfg, info, status="interrupted", reason=str(err),
                       iterations=err.it, num_train_iter=alg.num_train_iter)
        raise
    except NonFiniteLossError as err:  # the run's record says so; checkpoints stay as they were
        _write_results(run_dir, cfg, info, status="failed", reason=str(err),
                       iterations=err.it, terms=err.terms)
        raise
    except CheckpointWriteError as err:
        try:  # the disk may be full: the record is best effort, the message is not
            _write_results(run_dir, cfg, info, status="failed", reason=str(err),
                           iterations=alg.it)
        except OSError:
            pass
        raise
    except Exception as err:  # e.g. a damaged image met mid-epoch: failed, never "refused"
        _fail(run_dir, cfg, info, alg, err)
    finally:  # a run that stops on an error ends its progress line: its message gets its own
        bar = getattr(alg.hooks_dict.get("ProgressHook"), "bar", None)
        if bar is not None:
            bar.close()
    if alg.it < alg.num_train_iter:  # the loop ended early: never report success for it
        _write_results(run_dir, cfg, info, status="interrupted", iterations=alg.it,
                       num_train_iter=alg.num_train_iter)
        raise RunIncompleteError(f"training stopped at iteration {alg.it} of "
                                 f"{alg.num_train_iter}; results.json says interrupted")
    try:
        final = alg.evaluate("eval")
        results = {
            "status": "finished", "iterations": alg.it,
            "best_acc": float(alg.best_eval_acc), "best_it": int(alg.best_it) + 1,
            "final_acc": final["eval/top-1-acc"], "final_it": alg.it,
        }
        for name in filter(None, cfg["eval_mixed"].split(",")):  # fractions, as dm-ssl eval
            mixed = robustness(alg, info, None, False, name)[f"mixed_{name}"]
            results.update({f"mixed_{name}_top1": mixed["top1"],
                             f"mixed_{name}_top2": mixed["top2"]})
    except Exception as err:
        _fail(run_dir, cfg, info, alg, err)
    _write_results(run_dir, cfg, info, **results)
    results = {"algorithm": cfg["algorithm"], "dataset": info.name,
               "num_labels": info.num_labels, "seed": cfg["seed"], **results}
    if _is_main(cfg):
        alg.print_fn(f"results: {json.dumps(results)}")
        print(json.dumps(results), flush=True)  # stdout: one JSON line, as `dm-ssl eval`
    return results


#: where torchvision's TenCrop puts the centre crop (tl, tr, bl, br, centre, then flipped)
TEN_CROP_CENTRE = 4


def _views(loader, device):
    """The evaluation batches as ``(x, y)`` on ``device``; a ten-crop evaluation set
    (``ten_crop: true``, items ``(10, C, H, W)``) gives its centre crop, the one image the
    robustness measures perturb."""
    for batch in loader:
        x = batch["x_lb"]
        yield (x[:, TEN_CROP_CENTRE] if x.dim() == 5 else x).to(device), batch["y_lb"].to(device)


def _pixel_batches(loader, mean, std, device):
    """The evaluation batches back in [0, 1] pixel space (the attacks' ε is in pixels)."""
    import torch

    m = torch.tensor(mean, device=device).view(1, -1, 1, 1)
    s = torch.tensor(std, device=device).view(1, -1, 1, 1)
    for x, y in _views(loader, device):
        yield x * s + m, y


def robustness(alg, info, fgsm_eps: Optional[float], occlusion: bool,
               mixed: Optional[str]) -> Dict[str, Any]:
    """FGSM error, mixed-sample top-1/top-2 and occlusion accuracy (spec §9, Table A7, Fig. A1)
    of the EMA weights on the evaluation set, as fractions like the accuracies of
    ``results.json`` and semilearn's evaluation (:mod:`dm_ssl.evaluation` gives percent)."""
    from dm_ssl import evaluation as ev
    from dm_ssl.mixers import build_mixer

    out: Dict[str, Any] = {}
    loader, dev = alg.loader_dict["eval"], alg.device
    model = alg.model
    alg.ema.apply_shadow()
    try:
        if fgsm_eps is not None:
            out["fgsm_eps"] = fgsm_eps
            out["fgsm_error"] = ev.fgsm_error_rate(
                model, _pixel_batches(loader, info.mean, info.std, dev), eps=fgsm_eps,
                mean=info.mean, std=info.std) / 100
        if mixed is not None:
            import torch

            scores = ev.mixed_accuracy(
                model, ({"x_lb": x, "y_lb": y} for x, y in _views(loader, dev)),
                _eval_mixer(alg, mixed, build_mixer), lam=0.5,
                generator=torch.Generator().manual_seed(0))
            out[f"mixed_{mixed}"] = {k: v / 100 for k, v in scores.items()}
        if occlusion:
            out["occlusion"] = {str(k): v / 100 for k, v in ev.occlusion_accuracy(
                model, _pixel_batches(loader, info.mean, info.std, dev),
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
        raise ConfigError(f"--mixed {name}: a learned mixer's masks come from its trained Mix "
                          f"Block, and this run did not train one (its mixers: "
                          f"{', '.join(own) or 'none'})")
    return build_mixer(name)


def evaluate(checkpoint: str, data_dir: Optional[str] = None, device: Optional[str] = None,
             fgsm_eps: Optional[float] = None, occlusion: bool = False,
             mixed: Optional[str] = None) -> Dict[str, Any]:
    """Accuracy of a checkpoint (its EMA weights, as USB evaluates) on the evaluation set, and
    optionally its robustness (FGSM, mixed samples, occlusion)."""
    ckpt = Path(checkpoint)
    if fgsm_eps is not None and not (math.isfinite(fgsm_eps) and fgsm_eps >= 0):
        raise ConfigError(f"--fgsm must be a finite ε >= 0 in pixel units (8/255 ≈ 0.0314), "
                          f"got {fgsm_eps}")
    if mixed is not None:
        from dm_ssl.mixers import MIXERS

        if mixed not in MIXERS:
            raise ConfigError(f"--mixed: unknown mixer {mixed!r}; known mixers: "
                              f"{', '.join(sorted(MIXERS))}")
    if not ckpt.is_file():
        raise ConfigError(f"checkpoint {ckpt} not found")
    cfg_path = ckpt.parent / "config.yaml"
    if not cfg_path.is_file():
        raise ConfigError(f"{cfg_path} not found: dm-ssl eval needs the config.yaml that "
                          "dm-ssl train writes next to the checkpoints")
    cfg = validate(load_config(str(cfg_path)))
    cfg.update(save_dir=str(ckpt.parent.parent), save_name=ckpt.parent.name, progress=False,
               # the checkpoint holds every weight: the ImageNet file need not be there now
               use_pretrain=False, pretrained_path=None, pretrain_path="",
               # the training streams are never drawn: no copy of the training set on the device
               augment_on="loader")
    if data_dir is not None:
        cfg["data_dir"] = data_dir
    if device is not None:
        check_device(device, "--device")
        cfg["device"] = device
    alg, info, _ = prepare_run(cfg, record=False)  # the run directory stays as it is
    alg.load_model(str(ckpt))
    from semilearn.core.utils import EMA

    alg.ema = EMA(alg.model, alg.ema_m)
    alg.ema.load(alg.ema_model)
    out = alg.evaluate("eval")
    result = {"checkpoint": str(ckpt), "iteration": alg.it, "dataset": info.name,
              "top1": out["eval/top-1-acc"], "balanced_acc": out["eval/balanced_acc"],
              **robustness(alg, info, fgsm_eps, occlusion, mixed)}
    print(json.dumps(result))
    return result


# -- entry point -----------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dm-ssl", description=__doc__.splitlines()[0])
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true",
                        help="show the Python traceback of an error instead of one line")
    sub = parser.add_subparsers(dest="command", required=True)
    tr = sub.add_parser("train", help="train an algorithm from a YAML config", parents=[common])
    tr.add_argument("--config", required=True)
    tr.add_argument("--data-dir")
    tr.add_argument("--save-dir")
    tr.add_argument("--device")
    tr.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    tr.add_argument("--verbose", action="store_true",
                    help="semilearn's log lines on the terminal too (they are always in log.txt)")
    ev = sub.add_parser("eval", help="evaluate a checkpoint written by dm-ssl train",
                        parents=[common])
    ev.add_argument("--checkpoint", required=True)
    ev.add_argument("--data-dir")
    ev.add_argument("--device")
    ev.add_argument("--fgsm", type=float, metavar="EPS", help="FGSM error at ℓ∞ ε (8/255: 0.0314)")
    ev.add_argument("--occlusion", action="store_true", help="accuracy vs occluded share")
    ev.add_argument("--mixed", metavar="MIXER", help="mixed-sample top-1/top-2 with this mixer")
    sw = sub.add_parser("sweep", help="run a table's grid (dm_ssl.experiments.tables)",
                        parents=[common])
    sw.add_argument("table", help="a table name (dm-ssl sweep --list shows them)", nargs="?")
    sw.add_argument("--list", action="store_true", help="list the tables and exit")
    sw.add_argument("--runs-dir", default="runs",
                    help="runs go to RUNS_DIR/<table>/<cell>_s<seed> (default: runs)")
    sw.add_argument("--seeds", type=int, nargs="+", help="default: the table's (0 1 2 mostly)")
    sw.add_argument("--only", metavar="PATTERN", help="glob on cell id, setting or method")
    sw.add_argument("--launcher", choices=("local", "slurm"), default="local",
                    help="local: subprocesses on this machine; slurm: a submitit job array")
    sw.add_argument("--dry-run", action="store_true", help="print the plan, run nothing")
    sw.add_argument("--retry-failed", action="store_true",
                    help="move failed runs aside (kept) and start them again")
    sw.add_argument("--rerun-changed", action="store_true",
                    help="runs made with another config than this sweep asks for (another "
                         "--set, a changed table): move them aside (kept) and start them again")
    sw.add_argument("--data-dir", help="sets data_dir of every run")
    sw.add_argument("--device", help="sets device of every run (cpu, cuda)")
    sw.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="override a key in every run's config (repeatable)")
    sw.add_argument("--parallel", type=int, default=1, help="local: runs at a time")
    sw.add_argument("--gpus-per-run", type=int, default=1,
                    help="more than 1: each run is a torchrun DDP job (default: 1)")
    sw.add_argument("--cpus-per-run", type=int, default=8, help="slurm: cpus per task")
    sw.add_argument("--time", type=int, default=24 * 60, metavar="MINUTES",
                    help="slurm: time limit of each task (it requeues itself at the limit)")
    sw.add_argument("--partition", help="slurm partition")
    sw.add_argument("--account", help="slurm account")
    sw.add_argument("--mem-gb", type=int, help="slurm: memory per task")
    sw.add_argument("--max-parallel", type=int, default=64, help="slurm: array parallelism")
    sw.add_argument("--cluster", choices=("slurm", "local", "debug"),
                    help="submitit cluster (default: slurm when sbatch is there)")
    rp = sub.add_parser("report", help="mean ± std per table cell beside the paper's number",
                        parents=[common])
    rp.add_argument("runs", nargs="+", metavar="RUNS_DIR",
                    help="folders searched for results.json (sweeps' --runs-dir)")
    rp.add_argument("--table", help="only this table (default: every table found)")
    rp.add_argument("--format", choices=("md", "csv", "latex"), default="md")
    rp.add_argument("--metric", help="results.json key (default: the table's, e.g. best_acc)")
    rp.add_argument("--plots", metavar="DIR", help="write accuracy / mask-ratio plots here")
    rp.add_argument("--output", metavar="FILE", help="write the table here (default: stdout)")
    return parser


def sweep_command(args: argparse.Namespace) -> int:
    from dm_ssl.experiments import sweep as sw
    from dm_ssl.experiments.tables import TABLES, get_table

    if args.list or not args.table:
        for name, build in TABLES.items():
            t = build()
            print(f"{name:<13} {len(t.cells):>3} cells x {len(t.seeds)} seeds  {t.title}")
        return 0
    try:
        table = get_table(args.table)
    except KeyError as err:
        raise ConfigError(str(err.args[0])) from None
    overrides = apply_overrides({}, args.overrides)
    for key, value in (("data_dir", args.data_dir), ("device", args.device)):
        if value is not None:
            overrides[key] = value
    try:
        specs = sw.expand(table, Path(args.runs_dir), seeds=args.seeds, only=args.only,
                          overrides=overrides)
    except sw.SweepError as err:
        raise ConfigError(str(err)) from None
    changed = {s.name: (s, c) for s in specs if (c := sw.config_changes(s))}
    if changed and not args.rerun_changed:
        shown = "; ".join(f"{name} ({', '.join(c[:3])}{', …' if len(c) > 3 else ''})"
                          for name, (_, c) in list(changed.items())[:3])
        raise ConfigError(
            f"{len(changed)} run(s) under {Path(args.runs_dir) / table.name} were made with "
            f"another config than this sweep asks for: {shown}"
            f"{'; …' if len(changed) > 3 else ''}. They would be skipped or resumed and "
            "reported as if they matched: use another --runs-dir, or --rerun-changed to move "
            "them aside (kept) and start them again")
    if changed and not args.dry_run:
        for spec, _ in changed.values():
            sw._retry(spec, "changed")
    steps = sw.plan(specs)
    counts: Dict[str, int] = {}
    for row in steps:
        counts[row["action"]] = counts.get(row["action"], 0) + 1
    summary = ", ".join(f"{v} {k}" for k, v in counts.items())
    print(f"table {table.name}: {len(specs)} runs ({summary})")
    if args.dry_run:
        for spec, row in zip(specs, steps):
            print(f"  {row['run']:<48} {row['status']:<12} {row['action']:<14} "
                  f"{' '.join(sw.train_command(spec, args.gpus_per_run)[1:])}")
        return 0
    if args.retry_failed:
        for spec, row in zip(specs, steps):
            if row["status"] == "failed":
                sw._retry(spec)
    if args.launcher == "local" and args.cluster is None:
        import signal

        def stop(signum, frame):  # SIGTERM like Ctrl-C: the runs save and stop
            raise KeyboardInterrupt
        previous = signal.signal(signal.SIGTERM, stop)
        try:
            results = sw.run_local(specs, parallel=args.parallel,
                                   gpus_per_run=args.gpus_per_run)
        except KeyboardInterrupt:
            print("dm-ssl sweep: stopped; the running runs saved their checkpoints — the same "
                  "command continues the sweep", file=sys.stderr)
            return 130
        finally:
            signal.signal(signal.SIGTERM, previous)
        bad = [r for r in results if r["status"] != "finished"]
        print(f"{len(results) - len(bad)} runs finished, {len(bad)} not"
              + (f": {', '.join(r['run'] for r in bad)}" if bad else ""))
        left = [row["run"] for row in steps if row["status"] == "failed"]
        if left and not args.retry_failed:
            print(f"{len(left)} failed run(s) left as they are: {', '.join(left)} "
                  "(--retry-failed starts them again)")
        return 1 if bad else 0
    jobs = sw.run_submitit(specs, Path(args.runs_dir) / table.name / ".submitit",
                           cluster=args.cluster, gpus_per_run=args.gpus_per_run,
                           cpus_per_run=args.cpus_per_run, time_min=args.time,
                           partition=args.partition, account=args.account,
                           max_parallel=args.max_parallel, mem_gb=args.mem_gb)
    print(f"submitted {len(jobs)} runs" + (f" (job {jobs[0].job_id.split('_')[0]})" if jobs
                                          else " (nothing to do)"))
    return 0


def report_command(args: argparse.Namespace) -> int:
    from dm_ssl.experiments import report as rp
    from dm_ssl.experiments.tables import get_table

    table = None
    if args.table:
        try:
            table = get_table(args.table)
        except KeyError as err:
            raise ConfigError(str(err.args[0])) from None
    runs = rp.load_runs([Path(p) for p in args.runs], metric=args.metric)
    if not runs:
        raise ConfigError(f"no runs (run.json) under {', '.join(args.runs)}")
    cells, left_out = rp.aggregate(runs, table)
    metric = args.metric or (table.metric if table else
                             "each run's table metric; best_acc for runs outside a sweep")
    text = rp.render(cells, left_out, args.format, title=table.title if table else "",
                     metric=metric)
    if args.output:
        Path(args.output).write_text(text)
    else:
        print(text, end="")
    if args.plots:
        for path in rp.plot(runs, Path(args.plots)):
            print(f"plot: {path}", file=sys.stderr)
    return 0


#: third-party warnings every normal run would print, none about the user's run: timm's
#: deprecated import path (inside semilearn), semilearn's torch.cuda.amp.GradScaler
#: (deprecated; and "CUDA is not available" on every CPU run, where amp is off anyway)
THIRD_PARTY_WARNINGS = (
    (FutureWarning, r"Importing from timm\.models\.layers is deprecated"),
    (FutureWarning, r"`torch\.cuda\.amp\.GradScaler\(args\.\.\.\)` is deprecated"),
    (UserWarning, r"torch\.cuda\.amp\.GradScaler is enabled, but CUDA is not available"),
)


#: third-party loggers whose INFO lines reach the terminal once semilearn has configured the
#: root logger (matplotlib's "generated new fontManager" on a machine's first plot)
THIRD_PARTY_LOGGERS = ("matplotlib",)


def quiet_third_party_warnings() -> None:
    import logging
    import warnings

    for category, message in THIRD_PARTY_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=category)
    for name in THIRD_PARTY_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    quiet_third_party_warnings()
    try:
        if args.command == "train":
            file_cfg = load_config(args.config)
            cfg = apply_overrides(dict(file_cfg), args.overrides)
            cfg, note = shorten_schedule(file_cfg, cfg, {p.split("=", 1)[0].strip()
                                                         for p in args.overrides})
            if note and os.environ.get("RANK", "0") == "0":
                print(f"dm-ssl: {note}", file=sys.stderr)
            if args.verbose:
                cfg["verbose"] = True
            for key, value in (("data_dir", args.data_dir), ("save_dir", args.save_dir),
                               ("device", args.device)):
                if value is not None:
                    cfg[key] = value
            train(cfg)
        elif args.command == "sweep":
            return sweep_command(args)
        elif args.command == "report":
            return report_command(args)
        else:
            evaluate(args.checkpoint, args.data_dir, args.device, fgsm_eps=args.fgsm,
                     occlusion=args.occlusion, mixed=args.mixed)
    except ConfigError as err:
        if args.debug:
            raise
        print(f"dm-ssl: error: {err}", file=sys.stderr)
        return 2
    except Exception as err:  # one clear line for the known failure classes
        from dm_ssl.algorithms import CheckpointError, CheckpointWriteError, NonFiniteLossError
        from dm_ssl.data import DatasetError

        if args.debug:
            raise

        if isinstance(err, RunStopped):
            print(f"dm-ssl: {err}", file=sys.stderr)
            return EXIT_STOPPED
        if isinstance(err, (NonFiniteLossError, RunIncompleteError, CheckpointWriteError,
                            RunFailedError)):
            print(f"dm-ssl: run failed: {err}", file=sys.stderr)
            return 1
        if isinstance(err, (CheckpointError, DatasetError, ValueError, OSError)):
            print(f"dm-ssl: error: {one_line(err)}", file=sys.stderr)
            return 2
        # anything else (an error inside semilearn or torch): still one line, and the way
        # to the traceback
        print(f"dm-ssl: error: {type(err).__name__}: {one_line(err)} (--debug shows the "
              "traceback)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
