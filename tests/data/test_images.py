import pytest
from PIL import Image

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
