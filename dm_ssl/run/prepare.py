"""From a validated config to a built algorithm: seeds, the distributed start, datasets,
logger, tensorboard."""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any, Dict, Tuple

import numpy as np

from dm_ssl.config import AUGMENT_KEYS, FINEGRAINED_KEYS, ConfigError
from dm_ssl.data.registry import DATASETS, is_supervised


def set_seed(seed: int) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


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


def is_main(cfg: Dict[str, Any]) -> bool:
    return not cfg.get("distributed") or cfg.get("rank", 0) == 0


def build_datasets(cfg: Dict[str, Any], run_dir: Path) -> Tuple[Dict[str, Any], Any]:
    """The config's datasets (``train_lb``, ``train_ulb``, ``eval``; splits saved in, or read
    from, ``run_dir``) and their info, by the builder its dataset and algorithm call for.
    A dataset that cannot be read is a ConfigError; with an official download, it says how to
    let dm-ssl fetch it."""
    from dm_ssl.data import DatasetError, build_ssl_datasets

    data_dir = cfg.get("data_dir")
    if data_dir and Path(data_dir).exists() and not Path(data_dir).is_dir():
        raise ConfigError(f"data_dir {data_dir} is a file, not a folder: point --data-dir (or "
                          "the config's data_dir) at the folder that holds the dataset")
    entry = DATASETS.get(cfg["dataset"])
    try:
        transfer = entry is not None and entry.transfer is not None
        if is_supervised(cfg["algorithm"]) and not transfer:
            from dm_ssl.data import build_supervised_datasets

            sets, info = build_supervised_datasets(
                cfg["dataset"], cfg.get("data_dir"), run_dir,
                subset_percent=cfg.get("subset_percent"), seed=cfg["seed"],
                img_size=cfg.get("img_size"), algorithm=cfg["algorithm"],
                **{k: cfg[k] for k in AUGMENT_KEYS if k in cfg})
            dsets = {"train_lb": sets["train"], "eval": sets["eval"]}
        elif transfer:
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
        if is_supervised(cfg["algorithm"]):
            # semilearn's trainer wants an unlabeled set; supervised algorithms never read it
            dsets["train_ulb"] = dsets["train_lb"]
    except DatasetError as err:
        hint = ""
        if entry is not None and entry.sources and not cfg.get("download"):
            from dm_ssl.data.download import DownloadError, is_present

            if not isinstance(err, DownloadError) and not is_present(
                    entry.sources, cfg.get("data_dir") or "./data"):
                hint = (f" — or let dm-ssl fetch it: --download (download: true), or dm-ssl "
                        f"data download {cfg['dataset']} --data-dir {cfg.get('data_dir')}")
        raise ConfigError(f"{err}{hint}") from None
    return dsets, info


def prepare_run(cfg: Dict[str, Any], record: bool = True, staged: bool = False):
    """Datasets, logger, tensorboard and the algorithm for a validated config. ``staged``
    (``dm-ssl train``): nothing of the run's record is written yet, its log lines and
    tensorboard wait for :func:`dm_ssl.run.staging.commit`; ``record`` False (``dm-ssl eval``):
    they never go to the run directory."""
    from semilearn.core.utils import TBLog, get_logger

    from dm_ssl.algorithms import build_algorithm
    from dm_ssl.data import DatasetError

    from .staging import commit, staged_logger

    run_dir = Path(cfg["save_dir"]) / cfg["save_name"]
    barrier = None
    if cfg.get("distributed"):
        import torch.distributed as dist

        barrier = dist.barrier
        if not is_main(cfg):  # rank 0 writes the split first, the others read it
            barrier()
    try:
        if cfg.get("download") and is_main(cfg) and cfg["dataset"] in DATASETS:
            from dm_ssl.data.download import fetch_dataset

            # the others wait (barrier)
            fetch_dataset(DATASETS[cfg["dataset"]], cfg.get("data_dir") or "./data")
        dsets, info = build_datasets(cfg, run_dir)
    except DatasetError as err:  # a download's failure
        raise ConfigError(str(err)) from None
    finally:
        if barrier is not None and is_main(cfg):
            barrier()
    if "num_classes" in cfg and cfg["num_classes"] != info.num_classes:
        raise ConfigError(f"config key 'num_classes' is {cfg['num_classes']} but dataset "
                          f"{info.name!r} has {info.num_classes} classes")
    cfg = {**cfg, "num_classes": info.num_classes, "img_size": info.img_size}
    if record:  # log.txt and tensorboard start at staging.commit, once the run is accepted
        logger = staged_logger(cfg["save_name"])
    else:  # a logger of its own without a file (get_logger adds one per call to a name)
        logger = get_logger(f"{cfg['save_name']}.eval")
    # semilearn's per-evaluation lines go to log.txt; the terminal shows them with --verbose
    logger.propagate = bool(cfg.get("verbose"))
    tb_log = TBLog(str(run_dir), "tensorboard", use_tensorboard=False)
    import contextlib
    import io

    # semilearn print()s while building (SoftMatch: its p_target tensor): into the log, so
    # stdout keeps only dm-ssl's one JSON line
    with contextlib.redirect_stdout(io.StringIO()) as printed:
        alg = build_algorithm(cfg, dsets, tb_log, logger)
    for line in filter(None, printed.getvalue().splitlines()):
        logger.info(line)
    alg.run_logger = logger  # staging.commit moves its lines into log.txt
    if record and not staged:
        commit(alg, run_dir, bool(cfg["use_tensorboard"]), is_main(cfg))
    return alg, info, run_dir
