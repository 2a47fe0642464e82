import json
import os
import stat
import subprocess
import sys

import pytest
import torch
from safetensors.torch import save_file

from icg_rec.errors import CheckpointError
from icg_rec.io import (
    MANIFEST,
    atomic_write,
    file_sha256,
    read_json,
    save_weights,
    verify_folder,
    write_folder,
    write_json,
)


def _write_two(folder):
    (folder / "weights.bin").write_bytes(bytes(range(256)) * 4)
    (folder / "sub").mkdir()
    (folder / "sub" / "config.json").write_text('{"dim": 4}')


def test_a_written_folder_verifies_and_lists_every_file(tmp_path):
    hashes = write_folder(tmp_path / "model", _write_two)
    assert sorted(hashes) == ["sub/config.json", "weights.bin"]
    assert hashes["weights.bin"] == file_sha256(tmp_path / "model" / "weights.bin")
    assert verify_folder(tmp_path / "model", required=["weights.bin"]) == hashes
    assert json.loads((tmp_path / "model" / MANIFEST).read_text()) == {"files": hashes}
    assert [p.name for p in tmp_path.iterdir()] == ["model"]  # no temporary folder left behind


def test_a_rewrite_replaces_the_older_folder(tmp_path):
    write_folder(tmp_path / "model", _write_two)
    write_folder(tmp_path / "model", lambda f: (f / "new.txt").write_text("x"))
    assert sorted(p.name for p in (tmp_path / "model").iterdir()) == [MANIFEST, "new.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["model"]


def test_a_failed_write_keeps_the_older_folder(tmp_path):
    write_folder(tmp_path / "model", _write_two)

    def fail(folder):
        (folder / "half.bin").write_bytes(b"12")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        write_folder(tmp_path / "model", fail)
    verify_folder(tmp_path / "model", required=["weights.bin"])
    assert [p.name for p in tmp_path.iterdir()] == ["model"]


def test_a_truncated_file_is_named(tmp_path):
    write_folder(tmp_path / "model", _write_two)
    path = tmp_path / "model" / "weights.bin"
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(CheckpointError, match=r"file 'weights.bin' does not match its sha256"):
        verify_folder(tmp_path / "model")


def test_a_flipped_bit_is_named(tmp_path):
    write_folder(tmp_path / "model", _write_two)
    path = tmp_path / "model" / "sub" / "config.json"
    data = bytearray(path.read_bytes())
    data[3] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"file 'sub/config.json' does not match"):
        verify_folder(tmp_path / "model")


def test_a_missing_file_is_named(tmp_path):
    write_folder(tmp_path / "model", _write_two)
    (tmp_path / "model" / "weights.bin").unlink()
    with pytest.raises(CheckpointError, match=r"file 'weights.bin' listed in MANIFEST.json is missing"):
        verify_folder(tmp_path / "model")


def test_a_required_file_outside_the_manifest_is_named(tmp_path):
    write_folder(tmp_path / "model", _write_two)
    with pytest.raises(CheckpointError, match=r"lacks required file 'optimizer.pt'"):
        verify_folder(tmp_path / "model", required=["weights.bin", "optimizer.pt"])


def test_a_folder_without_a_manifest_is_refused(tmp_path):
    (tmp_path / "model").mkdir()
    with pytest.raises(CheckpointError, match="has no MANIFEST.json"):
        verify_folder(tmp_path / "model")
    with pytest.raises(CheckpointError, match="no folder at"):
        verify_folder(tmp_path / "absent")
    (tmp_path / "model" / MANIFEST).write_text("{not json")
    with pytest.raises(CheckpointError, match="MANIFEST.json is unreadable"):
        verify_folder(tmp_path / "model")


@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077])
def test_atomic_write_honours_the_umask_like_open(tmp_path, umask):
    previous = os.umask(umask)
    try:
        atomic_write(tmp_path / "atomic.txt", lambda tmp: tmp.write_text("x"))
        save_weights(
            tmp_path / "weights.safetensors", {"w": torch.zeros(2)}
        )  # safetensors writes 0o600 itself
        (tmp_path / "plain.txt").write_text("x")
    finally:
        os.umask(previous)
    names = ("atomic.txt", "weights.safetensors", "plain.txt")
    assert [stat.S_IMODE((tmp_path / name).stat().st_mode) for name in names] == [0o666 & ~umask] * 3


def test_a_failed_write_leaves_neither_file_nor_temporary(tmp_path):
    def fail(tmp):
        tmp.write_text("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        atomic_write(tmp_path / "out.json", fail)
    assert list(tmp_path.iterdir()) == []


def test_read_json_names_a_file_that_is_not_utf8(tmp_path):
    path = write_json(tmp_path / "meta.json", {"title": "Amélie"})
    assert read_json(path) == {"title": "Amélie"}
    path.write_bytes(b'{"title": "Am\xe9lie"}')  # latin-1 bytes
    with pytest.raises(CheckpointError, match=rf"{path} is corrupt: not UTF-8"):
        read_json(path)


def test_a_written_folder_honours_the_umask_like_mkdir_and_open(tmp_path):
    def write(folder):
        _write_two(folder)
        save_file({"w": torch.zeros(2)}, str(folder / "sub" / "w.safetensors"))  # made 0o600 by safetensors

    previous = os.umask(0o022)
    try:
        write_folder(tmp_path / "model", write)
    finally:
        os.umask(previous)
    modes = {p.relative_to(tmp_path).as_posix(): stat.S_IMODE(p.stat().st_mode) for p in tmp_path.rglob("*")}
    assert modes == {
        "model": 0o755,
        "model/sub": 0o755,
        "model/weights.bin": 0o644,
        "model/sub/config.json": 0o644,
        "model/sub/w.safetensors": 0o644,
        "model/MANIFEST.json": 0o644,
    }


@pytest.mark.parametrize(
    "content", [b'{"files": {"../../etc/passwd": "00"}}', b'{"files": {"/etc/passwd": "00"}}']
)
def test_a_manifest_listing_files_outside_its_folder_is_refused(tmp_path, content):
    write_folder(tmp_path / "model", _write_two)
    (tmp_path / "model" / MANIFEST).write_bytes(content)
    with pytest.raises(CheckpointError, match="outside its folder"):
        verify_folder(tmp_path / "model")


def test_a_manifest_that_is_not_utf8_is_named(tmp_path):
    write_folder(tmp_path / "model", _write_two)
    (tmp_path / "model" / MANIFEST).write_bytes(b'{"files": {"w\xe9": "00"}}')
    with pytest.raises(CheckpointError, match="MANIFEST.json is unreadable"):
        verify_folder(tmp_path / "model")


def test_a_killed_writers_temporary_folder_is_removed_by_the_next_write(tmp_path):
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    abandoned = tmp_path / f".model.{int(dead.stdout)}.abc123abc123.tmp"
    abandoned.mkdir()
    (abandoned / "half.bin").write_bytes(b"12")
    running = tmp_path / f".model.{os.getpid()}.def456def456.tmp"  # a live writer's (this process)
    running.mkdir()
    other = tmp_path / f".model.v2.{int(dead.stdout)}.abc123abc123.tmp"  # another folder's ("model.v2")
    other.mkdir()
    write_folder(tmp_path / "model", _write_two)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([running.name, other.name, "model"])


def test_a_folder_moved_aside_by_a_killed_writer_is_put_back(tmp_path):
    write_folder(tmp_path / "model", _write_two)
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    aside = tmp_path / f".model.{int(dead.stdout)}.a1b2c3d4.old"
    aside.mkdir()
    os.replace(tmp_path / "model", aside / "model")  # the writer died right after this rename

    def fail(folder):
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        write_folder(tmp_path / "model", fail)
    verify_folder(tmp_path / "model", required=["weights.bin"])
    assert [p.name for p in tmp_path.iterdir()] == ["model"]
