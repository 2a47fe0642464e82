import io
import struct
import zlib

import pytest
from PIL import Image, ImageFile

from icg_rec.data import images
from icg_rec.data.images import load_image
from icg_rec.errors import SchemaError


def test_images_load_as_rgb(tmp_path):
    Image.new("RGBA", (4, 3), (10, 20, 30, 128)).save(tmp_path / "cover.png")
    Image.new("L", (5, 2), 200).save(tmp_path / "grey.jpg")
    cover = load_image(tmp_path / "cover.png")
    assert (cover.mode, cover.size, cover.getpixel((0, 0))) == ("RGB", (4, 3), (10, 20, 30))
    grey = load_image(str(tmp_path / "grey.jpg"))
    assert (grey.mode, grey.size) == ("RGB", (5, 2))


def test_a_missing_file_is_named(tmp_path):
    with pytest.raises(SchemaError, match=r"image file .*absent.jpg does not exist"):
        load_image(tmp_path / "absent.jpg")


def test_corrupt_and_truncated_files_are_named(tmp_path):
    (tmp_path / "junk.jpg").write_bytes(b"not an image")
    with pytest.raises(SchemaError, match=r"image file .*junk.jpg is not a readable image"):
        load_image(tmp_path / "junk.jpg")
    Image.effect_noise((64, 64), 50).convert("RGB").save(tmp_path / "full.jpg")
    data = (tmp_path / "full.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(SchemaError, match=r"image file .*cut.jpg is not a readable image"):
        load_image(tmp_path / "cut.jpg")


def _png_header_claiming(path, width, height):
    """A PNG whose header claims width x height pixels (a few bytes on disk, a bomb if decoded)."""
    buffer = io.BytesIO()
    Image.new("1", (8, 8)).save(buffer, format="PNG")
    data = bytearray(buffer.getvalue())
    data[16:24] = struct.pack(">II", width, height)  # IHDR width, height
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))  # IHDR checksum
    path.write_bytes(bytes(data))
    return path


@pytest.mark.parametrize("width, height", [(10_000, 10_000), (20_000, 20_000), (100_000, 100_000)])
def test_images_over_the_pixel_limit_are_refused_before_decoding(tmp_path, monkeypatch, width, height):
    path = _png_header_claiming(tmp_path / "huge.png", width, height)

    def never(*args, **kwargs):
        raise AssertionError("an oversized image was decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", never)
    with pytest.raises(
        SchemaError, match=r"image file .*huge.png is too large .*MAX_IMAGE_PIXELS = 50,000,000"
    ):
        load_image(path)


def test_an_image_at_the_limit_loads(tmp_path, monkeypatch):
    monkeypatch.setattr(images, "MAX_IMAGE_PIXELS", 12)
    Image.new("RGB", (4, 3), (1, 2, 3)).save(tmp_path / "ok.png")
    Image.new("RGB", (13, 1), (1, 2, 3)).save(tmp_path / "big.png")
    assert load_image(tmp_path / "ok.png").size == (4, 3)
    with pytest.raises(SchemaError, match=r"big.png is too large \(13 x 1 pixels\)"):
        load_image(tmp_path / "big.png")
