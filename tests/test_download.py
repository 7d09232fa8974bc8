"""Downloads: resume, checksums, offline errors, safe extraction. Only loopback is contacted."""

from __future__ import annotations

import io
import socket
import tarfile
import zipfile

import pytest

from semsim_study.datasets.download import RemoteFile, extract, fetch, md5sum, with_overrides
from semsim_study.errors import DataError, DownloadError
from tests.support.http_server import serve


@pytest.fixture
def payload(tmp_path):
    src = tmp_path / "mirror"
    src.mkdir()
    data = bytes(range(256)) * 4000  # ~1 MB
    (src / "archive.bin").write_bytes(data)
    return src, data, md5sum(src / "archive.bin")


def test_http_download_verifies_and_renames(tmp_path, payload):
    src, data, digest = payload
    with serve(src) as (url, log):
        got = fetch(RemoteFile("archive.bin", f"{url}/archive.bin", digest), tmp_path / "dl")
    assert got.read_bytes() == data and not (tmp_path / "dl" / "archive.bin.part").exists()
    assert log == [("/archive.bin", None)]


def test_http_download_resumes_a_partial_file(tmp_path, payload):
    src, data, digest = payload
    dest = tmp_path / "dl"
    dest.mkdir()
    (dest / "archive.bin.part").write_bytes(data[:300_000])
    with serve(src) as (url, log):
        got = fetch(RemoteFile("archive.bin", f"{url}/archive.bin", digest), dest)
    assert got.read_bytes() == data
    assert log == [("/archive.bin", "bytes=300000-")]


def test_corrupt_partial_file_is_restarted_from_scratch(tmp_path, payload):
    src, data, digest = payload
    dest = tmp_path / "dl"
    dest.mkdir()
    (dest / "archive.bin.part").write_bytes(b"\xff" * 1000)  # wrong bytes from an earlier run
    with serve(src) as (url, log):
        got = fetch(RemoteFile("archive.bin", f"{url}/archive.bin", digest), dest)
    assert got.read_bytes() == data
    assert log == [("/archive.bin", "bytes=1000-"), ("/archive.bin", None)]


def test_wrong_checksum_is_an_error_and_leaves_nothing(tmp_path, payload):
    src, _, _ = payload
    with serve(src) as (url, _):
        with pytest.raises(DownloadError, match="has md5 .* expected 0123"):
            fetch(RemoteFile("archive.bin", f"{url}/archive.bin", "0123" * 8), tmp_path / "dl")
    assert list((tmp_path / "dl").iterdir()) == []


def test_existing_file_with_wrong_checksum_is_not_overwritten(tmp_path, payload):
    dest = tmp_path / "dl"
    dest.mkdir()
    (dest / "archive.bin").write_bytes(b"someone else's file")
    with pytest.raises(DownloadError, match="archive.bin: md5 is .*Delete it to download it again"):
        fetch(RemoteFile("archive.bin", "http://127.0.0.1:9/archive.bin", payload[2]), dest)
    assert (dest / "archive.bin").read_bytes() == b"someone else's file"


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_offline_error_says_what_to_fetch_and_where(tmp_path):
    f = RemoteFile("cifar-100-python.tar.gz", f"http://127.0.0.1:{_closed_port()}/c.tgz", "eb9058c3a382ffc7106e4002c42a8d85")
    with pytest.raises(DownloadError) as err:
        fetch(f, tmp_path / "raw")
    msg = str(err.value)
    assert "could not download" in msg and str(tmp_path / "raw" / "cifar-100-python.tar.gz") in msg
    assert "eb9058c3a382ffc7106e4002c42a8d85" in msg and "mirror" in msg


def test_http_404_is_a_download_error(tmp_path, payload):
    with serve(payload[0]) as (url, _):
        with pytest.raises(DownloadError, match="HTTP 404"):
            fetch(RemoteFile("nope.bin", f"{url}/nope.bin", None), tmp_path)


def test_local_mirror_folder_and_file_url(tmp_path, payload):
    src, data, digest = payload
    files = with_overrides([RemoteFile("archive.bin", "https://example.invalid/a", "x")], str(src), {"archive.bin": digest})
    assert fetch(files[0], tmp_path / "a").read_bytes() == data
    assert fetch(RemoteFile("archive.bin", f"file://{src}/archive.bin", digest), tmp_path / "b").read_bytes() == data
    with pytest.raises(DownloadError, match="does not exist"):
        fetch(RemoteFile("missing.bin", str(src / "missing.bin"), None), tmp_path / "c")


def test_mirror_url_prefix():
    f = with_overrides([RemoteFile("a.tar", "https://x/a.tar", "1")], "http://mirror.local/data/", None)[0]
    assert f.url == "http://mirror.local/data/a.tar" and f.md5 == "1"


def _tar_gz(path, members):
    with tarfile.open(path, "w:gz") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))


def test_extract_is_complete_or_absent(tmp_path):
    arc = tmp_path / "a.tar.gz"
    _tar_gz(arc, {"top/x.txt": b"x" * 5000, "top/y.txt": b"y" * 5000})
    out = extract(arc, tmp_path / "out")
    assert (out / "top" / "x.txt").read_bytes() == b"x" * 5000
    truncated = tmp_path / "t.tar.gz"
    truncated.write_bytes(arc.read_bytes()[: arc.stat().st_size // 2])
    with pytest.raises(DataError, match="t.tar.gz: corrupt or truncated archive"):
        extract(truncated, tmp_path / "out2")
    assert not (tmp_path / "out2").exists() and not (tmp_path / "out2.extracting").exists()


def test_extract_refuses_path_traversal(tmp_path):
    bad_zip = tmp_path / "evil.zip"
    with zipfile.ZipFile(bad_zip, "w") as zf:
        zf.writestr("../escape.txt", "boo")
    with pytest.raises(DataError, match="evil.zip: member '../escape.txt' would be written outside"):
        extract(bad_zip, tmp_path / "z")
    bad_tar = tmp_path / "evil.tar.gz"
    _tar_gz(bad_tar, {"../../escape.txt": b"boo"})
    with pytest.raises(DataError, match="evil.tar.gz"):
        extract(bad_tar, tmp_path / "t")
    assert not (tmp_path.parent / "escape.txt").exists()
