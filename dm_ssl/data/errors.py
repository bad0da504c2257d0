"""The one exception the data layer raises for bad files on disk."""

from __future__ import annotations

import os
from typing import Optional, Union


class DatasetError(ValueError):
    """A dataset or split file is missing, unreadable, or does not hold what it should.

    The message names the offending file and says how to fix it (where to get the dataset, or
    what to delete); ``path`` keeps the file for programs that want it.
    """

    def __init__(self, message: str, path: Optional[Union[str, os.PathLike]] = None) -> None:
        super().__init__(message)
        self.path = None if path is None else os.fspath(path)
