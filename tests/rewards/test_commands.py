import numpy as np
import polars as pl
import pytest
from PIL import Image

from icg_rec.cli import main
from icg_rec.errors import SchemaError


@pytest.fixture
def covers_folder(tmp_path):
    folder = tmp_path / "covers"
    folder.mkdir()
    Image.fromarray(np.full((8, 8, 3), 128, dtype=np.uint8)).save(folder / "grey.png")
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(
        folder / "noise.png"
    )
    (folder / "notes.txt").write_text("not an image")
    return folder


def test_score_an_images_folder_writes_one_row_per_image(covers_folder, tmp_path):
    out = tmp_path / "scores.parquet"
    assert (
        main(["rewards", "score", "--images", str(covers_folder), "--image-size", "8", "--out", str(out)])
        == 0
    )
    frame = pl.read_parquet(out)
    assert frame.columns == ["image_path", "aesthetic"]
    assert [p.rsplit("/", 1)[-1] for p in frame["image_path"]] == ["grey.png", "noise.png"]
    assert frame["aesthetic"][1] > frame["aesthetic"][0]  # flat grey: no contrast, colour or detail


def test_score_refuses_bad_inputs(covers_folder, tmp_path):
    out = str(tmp_path / "s.parquet")
    with pytest.raises(ValueError, match="exactly one"):
        main(["rewards", "score", "--out", out])
    manifest = tmp_path / "m.csv"
    pl.DataFrame({"path": ["x.png"]}).write_csv(manifest)
    with pytest.raises(SchemaError, match="image_path"):
        main(["rewards", "score", "--manifest", str(manifest), "--out", out])
    pl.DataFrame({"image_path": [str(covers_folder / "missing.png")]}).write_csv(manifest)
    with pytest.raises(SchemaError, match="missing.png"):
        main(["rewards", "score", "--manifest", str(manifest), "--out", out])
