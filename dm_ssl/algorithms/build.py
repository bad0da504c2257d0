"""config dict -> semilearn args -> a driven algorithm (host or ``*_dm``)."""

from __future__ import annotations

import logging
from typing import Any, Dict, Mapping, Optional

from semilearn.core.utils import ALGORITHMS

from dm_ssl.nets import get_net_builder

from .driver import driven


def make_args(config: Mapping[str, Any]):
    """semilearn's args namespace for ``config`` (its defaults, the algorithm's arguments)."""
    from semilearn.lighting.config import get_config

    name = config.get("algorithm", "fixmatch")
    if name not in ALGORITHMS:
        known = ", ".join(sorted(ALGORITHMS.keys()))
        raise ValueError(f"algorithm: unknown {name!r}; known: {known}")
    args = get_config(dict(config))
    args.distributed = bool(config.get("distributed", False))
    return args


def build_algorithm(config: Mapping[str, Any], dataset_dict: Dict[str, Any],
                    tb_log: Any = None, logger: Optional[logging.Logger] = None,
                    net_builder: Any = None):
    """Build ``config['algorithm']`` (any registered semilearn algorithm) behind the driver.

    ``dataset_dict`` holds ``train_lb``, ``train_ulb``, ``eval`` (and optionally ``test``)
    datasets from :mod:`dm_ssl.data`; ``net_builder`` defaults to the builder of
    ``config['net']`` (a :mod:`dm_ssl.nets` net, else semilearn's; ``in_channels`` and
    ``net_options``, e.g. ``{drop_path_rate: 0.1}``, for ours and timm's).
    """
    args = make_args(config)
    args.dataset_dict = dataset_dict
    if net_builder is None:
        net_builder = get_net_builder(args.net, args.net_from_name,
                                      in_channels=int(config.get("in_channels", 3)),
                                      **dict(config.get("net_options") or {}))
    return driven(ALGORITHMS[args.algorithm])(args, net_builder, tb_log, logger)
