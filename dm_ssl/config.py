"""The config layer: every key a run reads, loading, ``--set``, validation and comparison.

Configs are USB-style YAML read with PyYAML; ``--set key=value`` overrides the file (values
parsed as YAML: ``--set dm_eta=0.5 --set dm_head=shared``). :func:`validate` fills every default
(semilearn's, the algorithm's and :data:`DM_SSL_KEYS`), refuses unknown keys and values out of
range with one :class:`ConfigError` naming the key, and returns the fully resolved config that
``config.yaml`` records. :func:`config_changes` is the one comparison of two configs (resume and
sweep use it with their own key sets).
"""

from __future__ import annotations

import copy
import difflib
import functools
import math
import os
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, NamedTuple, Optional, Sequence, Tuple

import yaml


class Key(NamedTuple):
    """One key of :data:`DM_SSL_SCHEMA`: its default, what it changes, its values and group."""

    default: Any
    help: str
    choices: Optional[Tuple[str, ...]] = None
    group: str = "run"


_T, _S, _I = "fine-grained transfer (spec §6.2)", "supervised recipes (spec §6.3, §7)", \
    "inputs and nets"
_H = "training health"
#: Keys dm_ssl reads on top of semilearn's own arguments and the algorithm's. The config
#: reference (docs/config.md) is generated from this, :data:`RANGES` and semilearn's argument
#: help (:func:`describe_keys`).
DM_SSL_SCHEMA: Dict[str, Key] = {
    "device": Key(None, "cpu, cuda, cuda:1, ...; default: cuda when available"),
    "channels_last": Key(True, "channels-last memory format (1.65x faster WRN-28-2 steps on "
                               "CPU, same loss: scripts/bench_step.py)"),
    "download": Key(False, "fetch a missing dataset (its official archives, checksums "
                           "checked) into data_dir before the run; false: nothing touches the "
                           "network"),
    "progress": Key(True, "a progress bar with the live losses on the terminal"),
    "verbose": Key(False, "semilearn's log lines on the terminal too (always in log.txt)"),
    "sync_bn": Key(False, "torchrun: BN statistics over all processes (SyncBatchNorm, CUDA)"),
    "augment_on": Key("loader", "where the training images are augmented: in the data loader, "
                                "or on the device (dm_ssl.data.device_data)",
                      ("loader", "device")),
    "dataset_options": Key({}, "keywords for the dataset reader (digits: size, channels, ...)",
                           group=_I),
    "hflip": Key(None, "horizontal flip in the weak/strong views (default: the dataset's)",
                 group=_I),
    "in_channels": Key(3, "input channels of dm_ssl's own nets (small_cnn)", group=_I),
    "net_options": Key({}, "extra net keywords, e.g. drop_path_rate for timm models", group=_I),
    "label_percent": Key(None, "labeled share of every class, in (0, 100] (the paper: 15, 30, "
                               "50); replaces num_labels", group=_T),
    "label_list": Key(None, "a Self-Tuning image_list/train_XX.txt of your own as the labeled "
                            "set", group=_T),
    "resize": Key(256, "Resize before the 224 crop", group=_T),
    "ten_crop": Key(False, "10-crop evaluation", group=_T),
    "randaugment": Key(True, "RandAugment in the strong views", group=_T),
    "randaugment_views": Key("strong", "which views get RandAugment (official Self-Tuning: all "
                                       "four)", group=_T),
    "randaugment_n": Key(3, "RandAugment(n, m)'s n, >= 0 (semilearn's 224-px setting; "
                            "Self-Tuning 2)", group=_T),
    "randaugment_m": Key(10, "RandAugment(n, m)'s magnitude m, >= 0", group=_T),
    "pretrained_path": Key(None, "ImageNet weights file or URL (else torchvision's / timm's "
                                 "weights, through their caches)", group=_T),
    "subset_percent": Key(None, "class-balanced share of the training labels, in (0, 100] "
                                "(15, 30, 50)", group=_S),
    "auto_augment": Key(None, "timm policy, e.g. rand-m9-mstd0.5-inc1 (DeiT)", group=_S),
    "reprob": Key(0.0, "random erasing probability (DeiT 0.25)", group=_S),
    "interpolation": Key("bilinear", "resize interpolation (DeiT / RSB: bicubic)",
                         group=_S),
    "crop_pct": Key(None, "test-time centre-crop ratio (default 0.875; RSB A3 0.95)", group=_S),
    "eval_img_size": Key(None, "test side when it differs from img_size (RSB A3: 224)",
                         group=_S),
    "eval_mixed": Key("", "mixers (comma-separated, e.g. mixup,cutmix) whose mixed-sample "
                          "top-1/top-2 of the EMA weights at λ = 0.5 go into results.json "
                          "(Figure A1)", group="evaluation and records"),
    "experiment": Key({}, "the table cell a run belongs to (set by dm-ssl sweep)",
                      group="evaluation and records"),
    "health": Key(True, "the training health monitor: one warning line (and run.json's "
                        "health) when a run is not learning (dm_ssl.run.health)", group=_H),
    "health_window": Key(0.1, "share of the run after which the labeled loss must have "
                              "fallen and a mask must have let pseudo-labels through", group=_H),
    "health_sup_drop": Key(0.1, "the labeled loss's least drop over the window, as a share "
                                "of its start", group=_H),
    "health_grad_ratio": Key(5.0, "warn when |grad DM term| / |grad L_sup| on the backbone "
                                  "is above this (measured 1.3-2.6 with dm_w_ll 1)", group=_H),
    "health_grad_every": Key(None, "iterations between the DM hosts' gradient measurements "
                                   "(two extra backward passes each); default num_eval_iter, "
                                   "0: never", group=_H),
}
#: every dm_ssl key with its default (:data:`DM_SSL_SCHEMA`)
DM_SSL_KEYS: Dict[str, Any] = {k: v.default for k, v in DM_SSL_SCHEMA.items()}
#: supervised-only transform keys and their defaults (refused elsewhere, never silently unused)
AUGMENT_KEYS = ("auto_augment", "reprob", "interpolation", "crop_pct", "eval_img_size")
#: fine-grained transfer transform keys (refused for other datasets)
FINEGRAINED_KEYS = ("randaugment_views", "randaugment_n", "randaugment_m")
#: config keys holding paths: config.yaml records them absolute
PATH_KEYS = ("data_dir", "pretrained_path", "pretrain_path", "label_list", "load_path")


def _transfer_sets() -> tuple:
    """The fine-grained transfer datasets (the registry imports torchvision: lazily, so that
    ``dm-ssl report`` and ``--help`` start fast)."""
    from dm_ssl.data.registry import names

    return names("transfer")


def _supervised(algorithm: str) -> bool:
    from dm_ssl.data.registry import is_supervised

    return is_supervised(algorithm)


def _device_sets(protocol: str) -> str:
    """The datasets of ``protocol`` that ``augment_on: device`` serves."""
    from dm_ssl.data.registry import DATASETS, names

    return ", ".join(n for n in names(protocol) if protocol in DATASETS[n].device_augment)


class ConfigError(ValueError):
    """A config that cannot run; the message names the key or file."""


# -- loading -------------------------------------------------------------------------------------
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
    return copy.deepcopy(_known_keys(algorithm))  # a caller may change a default it holds


@functools.cache
def _known_keys(algorithm: str) -> Dict[str, Any]:
    # semilearn's get_config builds its argparse parsers, reads a file and starts a
    # subprocess: ~30 ms a call, once per algorithm and process (a sweep validates every cell)
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
    finegrained, supervised = out["dataset"] in _transfer_sets(), _supervised(out["algorithm"])
    if finegrained:
        pct = out["label_percent"]
        if isinstance(pct, bool) or not isinstance(pct, (int, float)) or not 0 < pct <= 100:
            raise ConfigError(f"config key 'label_percent' must be in (0, 100] for "
                              f"{out['dataset']}, got {out['label_percent']!r}")
        if pct == 100 and not supervised and not out["label_list"]:
            raise ConfigError(f"config key 'label_percent': 100 labels every training image "
                              f"of {out['dataset']}, which leaves {out['algorithm']} no "
                              "unlabeled images; use a share below 100 (the paper: 15, 30, 50), "
                              "or supervised_mixup for fully supervised training")
    if not supervised or finegrained:
        for key in AUGMENT_KEYS:
            if out[key] != DM_SSL_KEYS[key]:
                raise ConfigError(f"config key {key!r} applies to supervised training on "
                                  "cifar10/100, tinyimagenet and imagenet only")
    if not finegrained:
        for key in ("label_percent", "label_list"):
            if out[key] is not None:
                raise ConfigError(f"config key {key!r} applies to the fine-grained transfer "
                                  f"datasets ({', '.join(_transfer_sets())}) only; "
                                  f"{out['dataset']} takes num_labels")
        for key in FINEGRAINED_KEYS:
            if out[key] != DM_SSL_KEYS[key]:
                raise ConfigError(f"config key {key!r} applies to the fine-grained transfer "
                                  f"datasets ({', '.join(_transfer_sets())}) only")
    from dm_ssl.data.finegrained import RA_VIEWS

    if out["randaugment_views"] not in RA_VIEWS:
        raise ConfigError(f"config key 'randaugment_views' must be one of {', '.join(RA_VIEWS)}, "
                          f"got {out['randaugment_views']!r}")
    for key in ("randaugment_n", "randaugment_m"):
        if out[key] < 0:
            raise ConfigError(f"config key {key!r} must be >= 0, got {out[key]!r}")
    out["eval_mixed"] = _mixer_list("eval_mixed", out["eval_mixed"])
    _check_learned_eval(out)
    for key in [k for k, v in defaults.items() if isinstance(v, dict)]:
        if not isinstance(out[key], dict):
            raise ConfigError(f"config key {key!r} must be a mapping, got {out[key]!r}")
    every = out["health_grad_every"]
    if every is not None and (isinstance(every, bool) or not isinstance(every, int)):
        raise ConfigError(f"config key 'health_grad_every' must be an integer (iterations; 0: "
                          f"never) or null (num_eval_iter), got {every!r}")
    if out["hflip"] is not None and not isinstance(out["hflip"], bool):
        raise ConfigError(f"config key 'hflip' must be true, false or null (the dataset's "
                          f"default), got {out['hflip']!r}")
    sub = out["subset_percent"]
    if sub is not None and (isinstance(sub, bool) or not isinstance(sub, (int, float))
                            or not 0 < sub <= 100):
        raise ConfigError(f"config key 'subset_percent' must be in (0, 100], got {sub!r}")
    if out["pretrained_path"] is not None:  # dm_ssl's name for semilearn's pretrain_path
        out.update(use_pretrain=True, pretrain_path=str(out["pretrained_path"]))
    for key in ("num_labels", "num_train_iter", "batch_size", "img_size"):
        if key == "img_size" and out[key] is None:  # the dataset's own size
            continue
        if key in out and (isinstance(out[key], bool) or not isinstance(out[key], int)
                           or out[key] <= 0):
            raise ConfigError(f"config key {key!r} must be a positive integer, got {out[key]!r}")
    check_ranges(out)
    if out["num_train_iter"] % out["epoch"]:
        raise ConfigError(f"config key 'epoch' ({out['epoch']}) must divide num_train_iter "
                          f"({out['num_train_iter']}): semilearn runs num_train_iter // epoch "
                          "iterations per epoch and would stop early")
    if out["augment_on"] not in DM_SSL_SCHEMA["augment_on"].choices:
        raise ConfigError(f"config key 'augment_on' must be loader or device, got "
                          f"{out['augment_on']!r}")
    if out["augment_on"] == "device":
        _check_device_augment(out)
    check_device(out.get("device"), "device")
    return out


def _check_device_augment(cfg: Dict[str, Any]) -> None:
    """``augment_on: device`` only where the device path does the loader's transforms: the
    classic-CV SSL sets, and supervised training on the padded-crop sets at their own size
    (dm_ssl.data.device_data); everything else is refused naming what stands in the way."""
    why = None
    if cfg["dataset"] in _transfer_sets():
        why = (f"the fine-grained set {cfg['dataset']} is resized and cropped per image "
               "(RandomResizedCrop 224)")
    elif _supervised(cfg["algorithm"]):
        from dm_ssl.data.registry import names
        from dm_ssl.data.supervised import device_augment_refusal

        if cfg["dataset"] in names("supervised"):  # an unknown one: refused when read
            why = device_augment_refusal(cfg["dataset"], cfg.get("img_size"),
                                         **{k: cfg[k] for k in AUGMENT_KEYS})
    if why is not None:
        raise ConfigError(f"config key 'augment_on': device cannot run this config: {why}; "
                          f"use augment_on=loader (device: the SSL sets {_device_sets('ssl')}, "
                          f"and supervised {_device_sets('supervised')} at their own size "
                          "without auto_augment / reprob)")


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
    "T": (0.0, math.inf, True, True),           # a temperature: T <= 0 has no softmax
    "seed": (0, 2 ** 32, False, True),          # numpy's seeds
    "num_workers": (0, math.inf, False, True),
    "health_window": (0.0, 1.0, True, False),
    "health_sup_drop": (0.0, 1.0, False, True),
    "health_grad_ratio": (0.0, math.inf, True, True),
    "health_grad_every": (0, math.inf, False, True),
}


def _interval(key: str) -> str:
    """:data:`RANGES`' interval of ``key`` as written in maths: ``(0, 1]``, ``[0, 4294967296)``."""
    lo, hi, lo_open, hi_open = RANGES[key]

    def num(x: float) -> str:
        return str(x) if isinstance(x, int) else f"{x:g}"
    return f"{'(' if lo_open else '['}{num(lo)}, {num(hi)}{')' if hi_open else ']'}"


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
            interval = _interval(key)
            raise ConfigError(f"config key {key!r} must be in {interval}, got {value!r}")
    if not _supervised(cfg["algorithm"]) and "uratio" in cfg and not (
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


def absolute_paths(cfg: Mapping[str, Any]) -> Dict[str, Any]:
    """``cfg`` with its :data:`PATH_KEYS` made absolute (from the current directory)."""
    return {**cfg, **{k: os.path.abspath(os.path.expanduser(cfg[k])) for k in PATH_KEYS
                      if isinstance(cfg.get(k), str) and cfg[k]}}


def command_line_config(path: str, overrides: Sequence[str], **flags: Any
                        ) -> Tuple[Dict[str, Any], Optional[str]]:
    """The config of ``dm-ssl train``: the file, its ``--set`` overrides with the schedule
    fitted to a shorter ``num_train_iter`` (:func:`shorten_schedule`), then the flags that are
    not None (``data_dir``, ``save_dir``, ``device``; ``verbose`` when true). Returns the
    config (not yet validated) and the schedule note, or None."""
    file_cfg = load_config(path)
    cfg = apply_overrides(dict(file_cfg), overrides)
    cfg, note = shorten_schedule(file_cfg, cfg, {p.split("=", 1)[0].strip() for p in overrides})
    if flags.pop("verbose", False):
        cfg["verbose"] = True
    cfg.update({k: v for k, v in flags.items() if v is not None})
    return cfg, note


# -- comparing configs ---------------------------------------------------------------------------
#: keys that say where a run runs and how it is watched, not what it computes: a resume may
#: change them (config.yaml then records the new value, run.json the change)
OPERATIONAL_KEYS = ("save_dir", "save_name", "data_dir", "download", "load_path", "resume",
                    "device",
                    "channels_last", "num_workers", "progress", "verbose", "num_log_iter",
                    "num_eval_iter", "eval_batch_size", "eval_mixed", "use_tensorboard",
                    "use_wandb", "use_aim", "overwrite", "experiment", "gpu", "rank",
                    "world_size", "dist_url", "dist_backend", "multiprocessing_distributed",
                    "distributed", "health", "health_window", "health_sup_drop",
                    "health_grad_ratio", "health_grad_every")
#: keys that set the run's length: a resume may change them as an extension (the schedules
#: continue from the checkpoint: dm_ssl.algorithms.schedule)
SCHEDULE_KEYS = ("num_train_iter", "epoch")
#: what a resume may do with a key: refuse a change, extend the run, or record the change
KEY_KINDS = ("identity", "schedule", "operational")


def key_kind(key: str) -> str:
    """How a resume treats a change of ``key`` (:data:`KEY_KINDS`): ``operational`` keys
    (:data:`OPERATIONAL_KEYS`) may change, ``schedule`` keys (:data:`SCHEDULE_KEYS`) extend
    or shorten the run, every other key is the run's ``identity`` (model, data, method,
    optimisation) and a change is refused."""
    if key in OPERATIONAL_KEYS:
        return "operational"
    return "schedule" if key in SCHEDULE_KEYS else "identity"


def resume_keys(cfg: Iterable[str]) -> List[str]:
    """The keys of ``cfg`` that a resume must not change (the ``identity`` keys)."""
    return [k for k in cfg if key_kind(k) == "identity"]


def sweep_keys(requested: Iterable[str]) -> List[str]:
    """The keys a sweep asked for that a run already made must match: all but the
    ``operational`` ones (where it runs, not what it computes)."""
    return [k for k in requested if key_kind(k) != "operational"]


def read_run_config(run_dir: Path) -> Optional[Dict[str, Any]]:
    """A run's recorded ``config.yaml`` with absolute paths; None when there is none or it
    cannot be read (the checkpoint checks still guard such a run)."""
    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        return None
    try:
        saved = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError):
        return None
    return absolute_paths(saved) if isinstance(saved, dict) else None  # older runs: as typed


def config_changes(saved: Mapping[str, Any], wanted: Mapping[str, Any],
                   keys: Iterable[str]) -> List[str]:
    """``key: old -> new`` for each of ``keys`` that ``saved`` holds with another value than
    ``wanted`` (paths compared absolute); empty when they agree."""
    saved, wanted = absolute_paths(saved), absolute_paths(wanted)
    return [f"{k}: {saved[k]!r} -> {wanted.get(k)!r}" for k in keys
            if k in saved and saved[k] != wanted.get(k)]


# -- the config reference ------------------------------------------------------------------------
class KeyDoc(NamedTuple):
    """One row of the config reference: a key as :func:`validate` reads it."""

    name: str
    default: Any
    allowed: str
    help: str
    group: str
    algorithms: Tuple[str, ...]
    resume: str = "identity"  # what a resume may do with it (:func:`key_kind`)


def _choices() -> Dict[str, Tuple[str, ...]]:
    """The keys whose values are one of a list, from where each list is checked."""
    from dm_ssl.data.finegrained import RA_VIEWS
    from dm_ssl.data.registry import DATASETS
    from dm_ssl.data.supervised import INTERPOLATIONS

    out = {k: v.choices for k, v in DM_SSL_SCHEMA.items() if v.choices}
    out.update(randaugment_views=RA_VIEWS, interpolation=INTERPOLATIONS, optim=("SGD", "AdamW"),
               dataset=tuple(DATASETS))
    return out


def _allowed(key: str, default: Any, choices: Dict[str, Tuple[str, ...]]) -> str:
    """What :func:`validate` accepts for ``key``, in words."""
    if key in choices:
        text = " \\| ".join(choices[key])
        return text + (" (supervised_mixup: any timm optimizer)" if key == "optim" else "")
    if key in RANGES:
        return _interval(key)
    if key in ("num_labels", "num_train_iter", "batch_size"):
        return "integer > 0"
    if key == "img_size":
        return "integer > 0, or null (the dataset's size)"
    if key == "hflip":
        return "true \\| false \\| null (the dataset's)"
    if key == "uratio":
        return "integer >= 1"
    if isinstance(default, bool):
        return "true \\| false"
    if isinstance(default, int):
        return "integer"
    if isinstance(default, float):
        return "number"
    if isinstance(default, dict):
        return "mapping"
    return "string" if isinstance(default, str) else "any"


def _semilearn_help(algorithm: str) -> Dict[str, str]:
    """semilearn's argparse help of every key of ``algorithm`` (its parser, as
    :func:`dm_ssl.algorithms.make_args` builds it)."""
    import argparse
    from unittest import mock

    from dm_ssl.algorithms import make_args

    parsers: List[argparse.ArgumentParser] = []
    real = argparse.ArgumentParser.parse_args

    def spy(self: argparse.ArgumentParser, *args: Any, **kwargs: Any) -> Any:
        parsers.append(self)
        return real(self, *args, **kwargs)

    with mock.patch.object(argparse.ArgumentParser, "parse_args", spy):
        make_args({"algorithm": algorithm})
    return {a.dest: a.help or "" for p in parsers for a in p._actions if a.dest != "help"}


def describe_keys(algorithms: Sequence[str]) -> List[KeyDoc]:
    """Every key a config for one of ``algorithms`` may hold, with its default, the values
    :func:`validate` accepts, what it changes (dm_ssl's :data:`DM_SSL_SCHEMA`, or the
    algorithm's / semilearn's own argument help) and the algorithms that read it."""
    choices = _choices()
    seen: Dict[str, Dict[str, Any]] = {}
    for alg in algorithms:
        helps = _semilearn_help(alg)
        for key, default in known_keys(alg).items():
            row = seen.setdefault(key, {"default": default, "algorithms": []})
            row["algorithms"].append(alg)
            row.setdefault("help", helps.get(key, ""))
    rows = []
    for key, row in seen.items():
        spec = DM_SSL_SCHEMA.get(key)
        algs = tuple(row["algorithms"]) if len(row["algorithms"]) < len(algorithms) else ()
        group = spec.group if spec else ("algorithm" if algs else "semilearn (USB)")
        rows.append(KeyDoc(key, row["default"], _allowed(key, row["default"], choices),
                           spec.help if spec else row["help"], group, algs, key_kind(key)))
    return rows
