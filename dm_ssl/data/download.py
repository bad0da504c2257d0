"""Fetching a dataset's official archives into the layout its reader reads (issue #28).

The HTTP part is torchvision's (``torchvision.datasets.utils.download_url``: redirects, a
progress bar); what this module adds is what a week-long experiment needs around it:

* an interrupted download never looks complete: it is written to ``NAME.part`` and renamed
  only once whole and, where the official checksum is known, matching it; the next call
  starts it again;
* the archive is extracted into a hidden folder beside the data and moved into place when
  complete, so ``data_dir/<folder>/`` either is the whole dataset or is not there;
* every failure (no network, a server error, a wrong checksum, a damaged archive) is one
  :class:`DownloadError` naming the URL or file and what to do, and leaves nothing
  half-written behind.

Nothing here touches the network unless asked: a run reads its data offline unless the config
says ``download: true`` (or ``dm-ssl data download NAME``).
"""

from __future__ import annotations

import http.client
import os
import shutil
import urllib.error
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Protocol, Sequence, Union

from .errors import DatasetError

PathLike = Union[str, os.PathLike]


class DownloadError(DatasetError):
    """A dataset could not be fetched; the message names the URL or file and what to do."""


class DatasetLike(Protocol):  # dm_ssl.data.registry.Dataset (the registry imports this module)
    title: str
    sources: tuple
    no_source: Optional[str]


@dataclass(frozen=True)
class Source:
    """One official archive of a dataset: where it is, its file name and checksum, and the
    folder it extracts to (the folder the dataset's reader looks for under ``data_dir``)."""

    url: str
    filename: str
    folder: str
    md5: Optional[str] = None  # None: the publisher gives none (FGVC-Aircraft)


def md5sum(path: Path) -> str:
    """The file's MD5 (torchvision's ``calculate_md5``, which its ``check_integrity`` uses)."""
    from torchvision.datasets.utils import calculate_md5

    return calculate_md5(str(path))


def is_present(sources: Sequence[Source], root: PathLike) -> bool:
    """Every archive's folder is under ``root`` (its content is the reader's to check)."""
    return all((Path(root) / s.folder).exists() for s in sources)


def fetch(sources: Sequence[Source], root: PathLike, title: str) -> Path:
    """Each of ``sources`` downloaded (when its folder is missing) and extracted into
    ``root``; returns ``root``. A complete archive left by an earlier call is reused."""
    root = Path(root)
    for source in sources:
        if not (root / source.folder).exists():
            _extract(source, _download(source, root, title), root, title)
    return root


def _download(source: Source, root: Path, title: str) -> Path:
    from torchvision.datasets.utils import download_url

    archive = root / source.filename
    if archive.is_file() and (source.md5 is None or md5sum(archive) == source.md5):
        return archive
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise DownloadError(f"{title}: cannot create the data folder {root} ({err})",
                            root) from None
    part = archive.with_name(archive.name + ".part")
    part.unlink(missing_ok=True)  # an interrupted download: torchvision would take it as done
    try:
        download_url(source.url, str(root), filename=part.name)
    except (urllib.error.URLError, http.client.HTTPException, OSError, RuntimeError) as err:
        part.unlink(missing_ok=True)
        reason = getattr(err, "reason", None) or err
        raise DownloadError(f"{title}: cannot download {source.url} ({type(err).__name__}: "
                            f"{reason}); nothing was kept. Check the network (behind a proxy: "
                            f"HTTPS_PROXY), then run the same command again, or put "
                            f"{source.filename} into {root} by hand", archive) from None
    # a connection closed early ends torchvision's read loop without an error: the checksum,
    # or without one a full read of the archive, tells a whole file from a cut one
    if source.md5 is not None:
        got = md5sum(part)
        if got != source.md5:
            part.unlink()
            raise DownloadError(f"{title}: {source.url} arrived with MD5 {got}, not the "
                                f"official {source.md5} (cut short or damaged in transit, or "
                                "changed at the source); nothing was kept. Run the same "
                                f"command again, or put a verified {source.filename} into "
                                f"{root}", archive)
    else:
        problem = _unreadable(part)
        if problem is not None:
            part.unlink()
            raise DownloadError(f"{title}: {source.url} is not a whole archive ({problem}); "
                                "nothing was kept. Run the same command again, or put "
                                f"{source.filename} into {root} by hand", archive)
    os.replace(part, archive)
    return archive


def _unreadable(path: Path) -> Optional[str]:
    """Why the tar or zip archive at ``path`` cannot be read to its end (None: it can)."""
    import tarfile
    import zipfile

    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as z:
                bad = z.testzip()
            return None if bad is None else f"{bad} is damaged"
        with tarfile.open(path) as tar:
            for _ in tar:  # reads every member header, so the whole stream
                pass
        return None
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError) as err:
        return f"{type(err).__name__}: {' '.join(str(err).split())}"  # one line


def _extract(source: Source, archive: Path, root: Path, title: str) -> None:
    from torchvision.datasets.utils import extract_archive

    staging = root / f".{source.folder}.extracting"
    shutil.rmtree(staging, ignore_errors=True)  # an extraction killed half-way
    try:
        extract_archive(str(archive), str(staging))
        if not (staging / source.folder).is_dir():
            found = ", ".join(sorted(p.name for p in staging.iterdir())) or "nothing"
            raise DownloadError(f"{title}: {archive} holds {found}, not the {source.folder}/ "
                                "folder of the official archive; delete it and download "
                                "again", archive)
        for entry in staging.iterdir():  # the folder appears whole, in one rename
            target = root / entry.name
            if not target.exists():
                os.replace(entry, target)
    except DownloadError:
        raise
    except Exception as err:  # tarfile / zipfile errors of a damaged archive
        raise DownloadError(f"{title}: cannot extract {archive} ({type(err).__name__}: "
                            f"{' '.join(str(err).split())}); delete it and download again",
                            archive) from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def fetch_dataset(dataset: DatasetLike, root: PathLike) -> Path:
    """A registry entry's archives (:attr:`dm_ssl.data.registry.Dataset.sources`) into
    ``root``; a dataset without an official download raises :class:`DownloadError` saying
    where to get it and which layout is read."""
    if not dataset.sources:
        if dataset.no_source is None:  # read from elsewhere (digits: scikit-learn's copy)
            return Path(root)
        raise DownloadError(f"{dataset.title}: {dataset.no_source}")
    return fetch(dataset.sources, root, dataset.title)
