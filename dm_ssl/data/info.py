"""What a dataset builder returns beside its datasets: :class:`DatasetInfo`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional


@dataclass(frozen=True)
class DatasetInfo:
    """Metadata of the datasets :func:`~dm_ssl.data.build_ssl_datasets` built.

    ``img_size`` and ``channels`` describe the tensors the transforms produce; ``num_lb`` and
    ``num_ulb`` are the lengths of the labeled and unlabeled sets (``num_ulb`` is USB's
    ``ulb_dest_len``); ``split_path`` is the split file in the run directory.
    """

    name: str
    num_classes: int
    class_names: tuple[str, ...]
    img_size: int
    channels: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    num_labels: int
    seed: int
    num_train: int
    num_lb: int
    num_ulb: int
    num_eval: int
    split_path: Optional[Path]
