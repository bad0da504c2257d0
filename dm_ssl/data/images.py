"""Reading one image file, for every reader that keeps images as files (fine-grained sets,
Tiny-ImageNet, the device data path)."""

from __future__ import annotations

import os
from typing import Union

from PIL import Image

from .errors import DatasetError

PathLike = Union[str, "os.PathLike[str]"]


def load_rgb(path: PathLike) -> Image.Image:
    """Open an image file as an RGB PIL image (CUB holds a few grey and CMYK JPEGs)."""
    try:
        with Image.open(path) as img:
            return img.convert("RGB")
    except (OSError, ValueError, Image.DecompressionBombError) as err:
        raise DatasetError(f"cannot read image {os.fspath(path)} ({type(err).__name__}: "
                           f"{err}); the file is missing or damaged: restore it from the "
                           "dataset's archive", path) from err
