#!/usr/bin/env python
"""Write configs/ssl/: USB classic-CV configs for FixMatch-family hosts and their DM variants.

    .venv/bin/python scripts/make_ssl_configs.py      # rewrites configs/ssl/*.yaml

USB's classic-CV protocol (spec §7, docs/usb-notes.md): 2^20 iterations, SGD lr 0.03 (cosine),
momentum 0.9, nesterov, wd 5e-4 (CIFAR-100: 1e-3), EMA 0.999, batch 64, uratio 7, threshold
0.95, evaluation every 5120 iterations. CIFAR-10 uses WRN-28-2; CIFAR-100 uses WRN-28-8 (the
paper and TorchSSL) and, as ``*_wrn28x2.yaml``, WRN-28-2 (USB's own published table).
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

import yaml

ROOT = Path(__file__).resolve().parents[1] / "configs" / "ssl"
SPLITS = {"cifar10": (10, (40, 250, 4000)), "cifar100": (100, (400, 2500, 10000))}
HOST_KEYS = {
    "fixmatch": {"hard_label": True, "T": 0.5, "p_cutoff": 0.95},
    "flexmatch": {"hard_label": True, "T": 0.5, "p_cutoff": 0.95, "thresh_warmup": True},
    "freematch": {"hard_label": True, "T": 0.5, "ema_p": 0.999, "ent_loss_ratio": 0.001,
                  "use_quantile": False, "clip_thresh": False},
    "softmatch": {"hard_label": True, "T": 0.5, "dist_align": True, "dist_uniform": True,
                  "ema_p": 0.999, "n_sigma": 2, "per_class": False},
}
DM_KEYS = {  # spec §6.1, the official defaults
    "dm_w_ll": 1.0, "dm_w_lu": 1.0, "dm_mixer": "mixup", "dm_alpha": 1.0, "dm_loss": "dm_ce",
    "dm_eta": 1.0, "dm_mode": "both", "dm_thr": 0.5, "dm_scale": "pow", "dm_t": 1.0,
    "dm_k": 1.0, "dm_p_mix_cutoff": None, "dm_mask": "auto", "dm_head": "separate",
    # what OpenMixup's DMixMatch does (README: Differences from the official code)
    "dm_ramp_ll": "none", "dm_ramp_lu": "cosine", "dm_bias_ll": True, "dm_bn": "freeze",
    "dm_forward": "separate", "dm_head_init": "normal", "dm_pseudo": "ema",
}


def config(alg: str, dataset: str, num_labels: int, net: str, seed: int = 0) -> dict:
    host = alg.removesuffix("_dm")
    num_classes = SPLITS[dataset][0]
    suffix = "_wrn28x2" if dataset == "cifar100" and net == "wrn_28_2" else ""
    name = f"{alg}_{dataset}_{num_labels}{suffix}_{seed}"
    cfg = {
        "algorithm": alg, "save_dir": "./saved_models/ssl", "save_name": name, "resume": False,
        "use_tensorboard": True,
        "epoch": 1024, "num_train_iter": 1048576, "num_eval_iter": 5120, "num_log_iter": 256,
        "num_labels": num_labels, "batch_size": 64, "eval_batch_size": 256, "uratio": 7,
        "ulb_loss_ratio": 1.0, "ema_m": 0.999,
        **HOST_KEYS[host],
        "crop_ratio": 0.875, "img_size": 32,
        "optim": "SGD", "lr": 0.03, "momentum": 0.9,
        "weight_decay": 0.001 if dataset == "cifar100" else 0.0005, "layer_decay": 1.0,
        "amp": False, "clip_grad": 0.0, "use_cat": True,
        "net": net, "net_from_name": False,
        "data_dir": "./data", "dataset": dataset, "num_classes": num_classes,
        "train_sampler": "RandomSampler", "num_workers": 4, "seed": seed,
    }
    if alg.endswith("_dm"):
        cfg.update(DM_KEYS)
    return cfg


def write(root: Path, configs: Iterable[dict]) -> None:
    """Write each config to ``root/<dataset>/<save_name without the seed>.yaml``."""
    count = 0
    for cfg in configs:
        path = root / cfg["dataset"] / f"{cfg['save_name'].removesuffix('_0')}.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(cfg, sort_keys=False))
        count += 1
    print(f"wrote {count} configs under {root}")


def main() -> None:
    write(ROOT, (config(alg, dataset, num_labels, net)
                 for dataset, (_, splits) in SPLITS.items()
                 for net in (["wrn_28_2"] if dataset == "cifar10" else ["wrn_28_8", "wrn_28_2"])
                 for num_labels in splits
                 for host in HOST_KEYS
                 for alg in (host, f"{host}_dm")))


if __name__ == "__main__":
    main()
