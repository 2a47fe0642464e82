import numpy as np
import polars as pl
import pytest
import torch
from PIL import Image

from icg_rec.cli import main
from icg_rec.encoders import EfficientNetLite0Encoder
from icg_rec.encoders.base import read_pixels
from icg_rec.errors import SchemaError
from icg_rec.rewards.base import GENERIC_USER
from icg_rec.rewards.personalized import CoverInputs, PersonalizedConfig, PersonalizedRewardModel


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


@pytest.fixture(scope="module")
def cover_files(taste_log, tmp_path_factory):
    """The taste log's 24 covers as 12x12 PNG files (other size than the model reads), and a manifest."""
    frame, covers = taste_log
    folder = tmp_path_factory.mktemp("files")
    big = torch.nn.functional.interpolate(covers, size=(12, 12), mode="nearest")
    paths = []
    for item, cover in enumerate(big):
        paths.append(str(folder / f"{item}.png"))
        Image.fromarray((cover.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)).save(paths[-1])
    rows = frame.select("user_id", "item_id").unique(maintain_order=True).head(40)
    rows = pl.concat([rows, pl.DataFrame({"user_id": [GENERIC_USER], "item_id": [3]})])
    manifest = rows.with_columns(
        pl.col("item_id").map_elements(lambda i: paths[i], pl.String).alias("image_path")
    )
    manifest.write_parquet(folder / "manifest.parquet")
    return frame, paths, folder / "manifest.parquet"


@pytest.mark.parametrize("tower", ["cnn", "embedding"])
def test_cli_score_equals_predict_on_the_same_rows(cover_files, tower, tmp_path):
    frame, paths, manifest = cover_files
    encoder = EfficientNetLite0Encoder().freeze()  # what `rewards score` reads covers with
    if tower == "cnn":
        images = torch.cat([read_pixels(p, 8) for p in paths]).numpy()  # (24, 3, 8, 8)
        config = PersonalizedConfig(
            cover_tower="cnn", image_size=8, cnn_channels=4, dim=8, epochs=2, batch_size=64
        )
    else:
        images = encoder.encode(paths)  # (24, 1280)
        config = PersonalizedConfig(dim=8, hidden=16, epochs=2, batch_size=64)
    covers = CoverInputs(np.arange(24), images)
    model = PersonalizedRewardModel(config, image_encoder=encoder).fit(frame, covers, seed=0)
    model.save(tmp_path / "model")
    out = tmp_path / "scores.parquet"
    argv = ["rewards", "score", "--manifest", str(manifest), "--personalized", str(tmp_path / "model")]
    assert main([*argv, "--out", str(out)]) == 0
    scored = pl.read_parquet(out)
    expected = model.predict(scored, covers)
    np.testing.assert_allclose(scored["personalized"].to_numpy(), expected, rtol=0, atol=1e-6)
    assert scored["personalized"].std() > 1e-3  # the rows differ: the comparison is not between constants
