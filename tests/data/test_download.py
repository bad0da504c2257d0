"""``dm-ssl data download`` and ``download: true`` against a loopback HTTP server (127.0.0.1,
started here, bounded in time) serving archives made here in the official formats: a CIFAR
python tarball, the Tiny-ImageNet zip, CUB's and FGVC-Aircraft's tgz (issue #28)."""

import dataclasses
import hashlib
import io
import tarfile
import zipfile
from pathlib import Path

import pytest
import yaml

from dm_ssl.data import registry
from dm_ssl.data.download import Source

from .cifar_files import write_cifar10
from .finegrained_files import write_aircraft, write_cub
from .test_tinyimagenet import write_tinyimagenet


def _tar(folder: Path, gz: bool = True) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz" if gz else "w") as tar:
        tar.add(folder, arcname=folder.name)
    return buf.getvalue()


def _zip(folder: Path) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for path in sorted(folder.rglob("*")):
            z.write(path, path.relative_to(folder.parent).as_posix())
    return buf.getvalue()


def _serve(monkeypatch, server, name: str, body: bytes, filename: str, folder: str,
           md5: str = "same") -> Source:
    """``registry.DATASETS[name]`` fetched from ``server``; ``md5`` "same": the body's."""
    server.files[f"/{filename}"] = body
    source = Source(f"{server.url}/{filename}?download=1", filename, folder,
                    hashlib.md5(body).hexdigest() if md5 == "same" else md5)
    entry = dataclasses.replace(registry.DATASETS[name], sources=(source,))
    monkeypatch.setitem(registry.DATASETS, name, entry)
    return source


def _cli(capsys, *argv):
    from dm_ssl import cli

    capsys.readouterr()
    code = cli.main(list(argv))
    return code, capsys.readouterr().err


def _leftovers(root: Path):
    return sorted(p.name for p in root.iterdir() if p.name.endswith(".part")
                  or p.name.endswith(".extracting")) if root.exists() else []


def _cifar_archive(tmp_path) -> bytes:
    write_cifar10(tmp_path / "src")
    return _tar(tmp_path / "src" / "cifar-10-batches-py")


def test_cifar10_downloads_extracts_and_a_run_with_download_true_reads_it(
        tmp_path, monkeypatch, capsys, server):
    _serve(monkeypatch, server, "cifar10", _cifar_archive(tmp_path), "cifar-10-python.tar.gz",
           "cifar-10-batches-py")
    data = tmp_path / "data"
    code, err = _cli(capsys, "data", "download", "cifar10", "--data-dir", str(data))
    assert code == 0, err
    assert (data / "cifar-10-batches-py" / "data_batch_1").is_file()
    assert (data / "cifar-10-python.tar.gz").is_file() and _leftovers(data) == []
    # a second call finds it there and does not ask the server again
    asked = len(server.gets)
    assert _cli(capsys, "data", "download", "cifar10", "--data-dir", str(data))[0] == 0
    assert len(server.gets) == asked
    # a run without the data: refused with the way to get it, and nothing fetched
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({
        "algorithm": "fixmatch_dm", "dataset": "cifar10", "num_labels": 10, "net": "small_cnn",
        "num_train_iter": 2, "epoch": 1, "num_eval_iter": 2, "batch_size": 4, "uratio": 1,
        "eval_batch_size": 16, "num_workers": 0, "progress": False, "device": "cpu"}))
    fresh = tmp_path / "fresh"
    train = ["train", "--config", str(cfg), "--data-dir", str(fresh), "--save-dir",
             str(tmp_path / "runs")]
    code, err = _cli(capsys, *train)
    assert code == 2 and "dm-ssl data download cifar10" in err and "--download" in err, err
    assert not fresh.exists() and len(server.gets) == asked
    # --download: fetched into the run's data_dir, then the run trains on it
    code, err = _cli(capsys, *train, "--download")
    assert code == 0, err
    assert (fresh / "cifar-10-batches-py").is_dir() and len(server.gets) == 2 * asked


def test_a_wrong_checksum_keeps_nothing(tmp_path, monkeypatch, capsys, server):
    _serve(monkeypatch, server, "cifar10", _cifar_archive(tmp_path), "cifar-10-python.tar.gz",
           "cifar-10-batches-py", md5="0" * 32)
    data = tmp_path / "data"
    code, err = _cli(capsys, "data", "download", "cifar10", "--data-dir", str(data))
    lines = [line for line in err.splitlines() if line.startswith("dm-ssl:")]
    assert code == 2 and len(lines) == 1 and "MD5" in lines[0] and "0" * 32 in lines[0], err
    assert "cifar-10-python.tar.gz" in lines[0]
    assert list(data.iterdir()) == []                    # no archive, no part, no folder


def test_an_interrupted_download_is_finished_by_the_next_call(tmp_path, monkeypatch, capsys,
                                                              server):
    _serve(monkeypatch, server, "cifar10", _cifar_archive(tmp_path), "cifar-10-python.tar.gz",
           "cifar-10-batches-py")
    server.drop.add("/cifar-10-python.tar.gz?download=1")
    data = tmp_path / "data"
    code, err = _cli(capsys, "data", "download", "cifar10", "--data-dir", str(data))
    lines = [line for line in err.splitlines() if line.startswith("dm-ssl:")]
    assert code == 2 and len(lines) == 1 and "nothing was kept" in lines[0], err
    assert "Run the same command again" in lines[0] and "MD5" in lines[0]  # cut short
    assert list(data.iterdir()) == []                    # nothing that looks complete
    server.drop.clear()                                  # the network is back
    code, err = _cli(capsys, "data", "download", "cifar10", "--data-dir", str(data))
    assert code == 0, err
    assert (data / "cifar-10-batches-py" / "test_batch").is_file() and _leftovers(data) == []


def test_no_server_is_one_clear_line(tmp_path, monkeypatch, capsys, server):
    _serve(monkeypatch, server, "cifar10", b"x", "cifar-10-python.tar.gz", "cifar-10-batches-py")
    server.close()  # nothing listens on the port any more
    data = tmp_path / "data"
    code, err = _cli(capsys, "data", "download", "cifar10", "--data-dir", str(data))
    lines = [line for line in err.splitlines() if line.startswith("dm-ssl:")]
    assert code == 2 and len(lines) == 1 and "cannot download" in lines[0], err
    assert "Traceback" not in err and _leftovers(data) == []


def test_a_download_without_checksum_cut_short_is_caught_before_it_looks_complete(
        tmp_path, monkeypatch, capsys, server):
    write_aircraft(tmp_path / "src")
    _serve(monkeypatch, server, "fgvc_aircraft", _tar(tmp_path / "src" / "fgvc-aircraft-2013b"),
           "fgvc-aircraft-2013b.tar.gz", "fgvc-aircraft-2013b", md5=None)
    server.drop.add("/fgvc-aircraft-2013b.tar.gz?download=1")
    data = tmp_path / "data"
    code, err = _cli(capsys, "data", "download", "fgvc_aircraft", "--data-dir", str(data))
    assert code == 2 and "is not a whole archive" in err and "nothing was kept" in err, err
    assert list(data.iterdir()) == []
    server.drop.clear()
    assert _cli(capsys, "data", "download", "fgvc_aircraft", "--data-dir", str(data))[0] == 0
    assert (data / "fgvc-aircraft-2013b" / "data" / "variants.txt").is_file()


def test_a_damaged_archive_is_named_and_leaves_no_folder(tmp_path, monkeypatch, capsys, server):
    _serve(monkeypatch, server, "fgvc_aircraft", b"x", "fgvc-aircraft-2013b.tar.gz",
           "fgvc-aircraft-2013b", md5=None)             # the publisher gives no checksum
    data = tmp_path / "data"
    data.mkdir()
    (data / "fgvc-aircraft-2013b.tar.gz").write_bytes(b"not a tarball")  # put there by hand
    code, err = _cli(capsys, "data", "download", "fgvc_aircraft", "--data-dir", str(data))
    lines = [line for line in err.splitlines() if line.startswith("dm-ssl:")]
    assert code == 2 and len(lines) == 1 and "cannot extract" in lines[0], err
    assert "fgvc-aircraft-2013b.tar.gz" in lines[0] and "\n" not in err.strip()
    assert not (data / "fgvc-aircraft-2013b").exists() and _leftovers(data) == []


@pytest.mark.parametrize("name", ["tinyimagenet", "cub200", "fgvc_aircraft"])
def test_each_official_archive_format_extracts_into_what_the_reader_reads(
        tmp_path, monkeypatch, capsys, server, name):
    src = tmp_path / "src"
    if name == "tinyimagenet":
        write_tinyimagenet(src)
        body, filename, folder = _zip(src / "tiny-imagenet-200"), "tiny-imagenet-200.zip", \
            "tiny-imagenet-200"
    elif name == "cub200":
        write_cub(src)
        (src / "attributes.txt").write_text("1 has_bill_shape::curved\n")  # as the real tgz
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w:gz") as tar:
            tar.add(src / "CUB_200_2011", arcname="CUB_200_2011")
            tar.add(src / "attributes.txt", arcname="attributes.txt")
        body, filename, folder = buf.getvalue(), "CUB_200_2011.tgz", "CUB_200_2011"
    else:
        write_aircraft(src)
        body, filename, folder = (_tar(src / "fgvc-aircraft-2013b"),
                                  "fgvc-aircraft-2013b.tar.gz", "fgvc-aircraft-2013b")
    _serve(monkeypatch, server, name, body, filename, folder)
    data = tmp_path / "data"
    code, err = _cli(capsys, "data", "download", name, "--data-dir", str(data))
    assert code == 0, err
    entry = registry.DATASETS[name]
    if name == "tinyimagenet":
        from dm_ssl.data.tinyimagenet import read_tinyimagenet

        assert len(read_tinyimagenet(data, "train")) > 0 and len(read_tinyimagenet(data, "val"))
    else:
        from dm_ssl.data.finegrained_readers import read_split

        _, rels, labels = read_split(entry.transfer, data, "train")
        assert len(rels) == len(labels) > 0
    assert _leftovers(data) == []


def test_datasets_without_an_official_download_say_where_to_get_them(tmp_path, capsys):
    code, err = _cli(capsys, "data", "download", "stanford_cars", "--data-dir", str(tmp_path))
    assert code == 2 and "no longer serves the files" in err and "devkit" in err
    code, err = _cli(capsys, "data", "download", "cifar11", "--data-dir", str(tmp_path))
    assert code == 2 and "cifar11" in err and "cifar10" in err
    assert _cli(capsys, "data", "download", "digits", "--data-dir", str(tmp_path))[0] == 0
    assert list(tmp_path.iterdir()) == []
