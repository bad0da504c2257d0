"""Finding image files and reading one, for every reader that keeps images as files
(fine-grained sets, Tiny-ImageNet, image folders, the device data path)."""

from __future__ import annotations

import os
from typing import Optional, Union

from PIL import Image

from .errors import DatasetError

PathLike = Union[str, "os.PathLike[str]"]

# torchvision.datasets.folder.IMG_EXTENSIONS, compared case-insensitively as there
IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


def is_image_file(name: str) -> bool:
    """Whether a file name is an image torchvision's ImageFolder would read."""
    # "._x.JPEG": macOS's AppleDouble metadata beside each file copied from a Mac, never an image
    return name.lower().endswith(IMG_EXTENSIONS) and not name.startswith("._")


def image_files(folder: PathLike) -> list[str]:
    """Every image file under ``folder`` (recursively, links followed), sorted per folder."""
    found = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        dirnames.sort()
        found += [os.path.join(dirpath, n) for n in sorted(filenames) if is_image_file(n)]
    return found


def load_rgb(path: PathLike, draft: Optional[tuple[int, int]] = None) -> Image.Image:
    """Open an image file as an RGB PIL image (CUB holds a few grey and CMYK JPEGs; users'
    folders palette PNGs with transparency too). ``draft``: a JPEG decodes at the smallest
    scale still at least this size (PIL's draft mode), for callers that shrink it anyway."""
    try:
        with Image.open(path) as img:
            if draft is not None:
                img.draft("RGB", draft)
            if img.mode == "P" and "transparency" in img.info:
                # the same RGB values; PIL warns when a palette's alpha goes straight to RGB
                img = img.convert("RGBA")
            return img.convert("RGB")
    except (OSError, ValueError, Image.DecompressionBombError) as err:
        raise DatasetError(f"cannot read image {os.fspath(path)} ({type(err).__name__}: "
                           f"{err}); the file is missing or damaged: restore it from the "
                           "dataset's archive", path) from err
