"""``dm-ssl eval``: a checkpoint's accuracy and robustness, leaving its run directory as it is."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Dict, Optional

from dm_ssl.config import ConfigError, check_device, load_config, validate
from dm_ssl.evaluation.run_metrics import robustness

from .prepare import prepare_run


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
    if ckpt.is_dir():
        found = sorted(p.name for p in ckpt.glob("*.pth"))
        raise ConfigError(f"--checkpoint {ckpt} is a directory: name a checkpoint file in it ("
                          + (", ".join(found) if found else "it holds no *.pth file") + ")")
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
