"""The EfficientNet-Lite0 default: strict weight loading, differentiable forward, sensible features."""

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from icg_rec.encoders import EfficientNetLite0Encoder, load_image_encoder
from icg_rec.encoders.base import pil_to_pixels, resize_pixels
from icg_rec.encoders.efficientnet import _state_dict
from icg_rec.errors import SchemaError

# ImageNet classes a film poster plausibly resembles: web site, comic book, book jacket.
POSTER_LIKE_CLASSES = {916, 917, 921}


def _poster_like(seed: int, size: tuple[int, int] = (185, 278)) -> Image.Image:
    """A smooth random RGB image at the MovieLens poster size (width, height)."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, size=(9, 6, 3), dtype=np.uint8)
    return Image.fromarray(coarse).resize(size, Image.Resampling.BICUBIC)


def test_weights_load_strictly_into_a_lite0_architecture(lite0):
    assert lite0.model.state_dict().keys() == _state_dict().keys()
    assert not any(block.has_se for block in lite0.model._blocks)
    activations = [lite0.model._swish] + [block._swish for block in lite0.model._blocks]
    assert all(isinstance(act, nn.ReLU6) for act in activations)
    assert lite0.dim == 1280 and lite0.image_size == 224


def test_default_is_frozen_and_stays_in_eval_mode(lite0):
    assert not any(p.requires_grad for p in lite0.parameters())
    parent = nn.Sequential(lite0)
    parent.train()
    assert not lite0.training and not lite0.model._bn0.training
    assert isinstance(load_image_encoder(), EfficientNetLite0Encoder)


def test_forward_is_differentiable_in_the_pixels(lite0):
    pixels = torch.rand(1, 3, 64, 48, generator=torch.Generator().manual_seed(0), requires_grad=True)
    emb = lite0(pixels)
    assert emb.shape == (1, 1280) and emb.dtype == torch.float32
    emb.square().sum().backward()
    assert pixels.grad is not None and pixels.grad.abs().sum() > 0
    assert all(p.grad is None for p in lite0.parameters())


def test_encode_matches_forward_and_is_deterministic(lite0, tmp_path):
    images = [_poster_like(0), _poster_like(1)]
    images[1].save(tmp_path / "cover.png")
    emb = lite0.encode([images[0], tmp_path / "cover.png"], batch_size=1)
    assert emb.shape == (2, 1280) and emb.dtype == np.float32
    with torch.no_grad():
        direct = lite0(pil_to_pixels(images[0]))[0].numpy()
    np.testing.assert_allclose(emb[0], direct, atol=1e-4)
    batched = lite0.encode(images)
    np.testing.assert_allclose(batched, emb, atol=1e-4)  # a PIL image == its PNG file, any batching
    np.testing.assert_array_equal(lite0.encode(images), batched)


def test_empty_image_list_gives_an_empty_matrix(lite0):
    emb = lite0.encode([])
    assert emb.shape == (0, 1280) and emb.dtype == np.float32


@pytest.mark.parametrize(
    ("pixels", "message"),
    [
        (torch.rand(3, 32, 32), r"shape \(B, 3, H, W\), got \(3, 32, 32\)"),
        (torch.rand(2, 1, 32, 32), r"shape \(B, 3, H, W\), got \(2, 1, 32, 32\)"),
        (torch.full((1, 3, 8, 8), 255.0), "must lie in \\[0, 1\\], got min 255, max 255"),
        (torch.full((1, 3, 8, 8), -0.5), "must lie in \\[0, 1\\], got min -0.5"),
        (torch.full((1, 3, 8, 8), 1.01), "must lie in \\[0, 1\\], got min 1.01, max 1.01"),
        (torch.full((1, 3, 8, 8), float("nan")), "must lie in \\[0, 1\\]"),
        (torch.zeros(1, 3, 8, 8, dtype=torch.uint8), "float tensor in \\[0, 1\\], got dtype torch.uint8"),
        (np.zeros((1, 3, 8, 8), dtype=np.float32), "must be a torch.Tensor"),
    ],
)
def test_bad_pixels_are_refused(lite0, pixels, message):
    with pytest.raises(ValueError, match=message):
        lite0(pixels)


def test_bad_image_inputs_are_refused(lite0, tmp_path):
    with pytest.raises(SchemaError, match="missing.jpg does not exist"):
        lite0.encode([tmp_path / "missing.jpg"])
    with pytest.raises(ValueError, match=r"images\[0\] must be a PIL image, str or Path, got int"):
        lite0.encode([3])
    with pytest.raises(ValueError, match="got a single str"):
        lite0.encode("cover.jpg")


@pytest.fixture(scope="module")
def posters(movielens_root) -> list[Image.Image]:
    paths = sorted((movielens_root / "posters").glob("*.jpg"))[:8]
    return [Image.open(path).convert("RGB") for path in paths]


def test_inception_scaling_matches_the_stem_statistics(lite0, posters):
    """The weights expect (x*255-127)/128: stem activations then match the stem batch-norm statistics."""
    pixels = torch.cat([resize_pixels(pil_to_pixels(p), 224) for p in posters])  # (8, 3, 224, 224)
    imagenet = (pixels - torch.tensor([0.485, 0.456, 0.406])[:, None, None]) / torch.tensor(
        [0.229, 0.224, 0.225]
    )[:, None, None]
    bn = lite0.model._bn0
    live = bn.running_var > 1e-4

    def log_var_mismatch(x: torch.Tensor) -> float:
        with torch.no_grad():
            var = lite0.model._conv_stem(x).var(dim=(0, 2, 3))  # (32,)
        return (var[live] / bn.running_var[live]).log().abs().mean().item()

    ours = log_var_mismatch((pixels - lite0.mean) / lite0.std)
    assert ours < 0.6 < 1.2 < log_var_mismatch(imagenet)


def test_posters_get_distinct_features_and_poster_like_classes(lite0, posters):
    emb = lite0.encode(posters)
    unit = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    cosine = unit @ unit.T
    assert cosine[~np.eye(len(posters), dtype=bool)].max() < 0.99
    with torch.no_grad():
        top5 = lite0.model._fc(torch.from_numpy(emb)).topk(5).indices  # (8, 5) ImageNet classes
    poster_like = sum(bool(POSTER_LIKE_CLASSES & set(row.tolist())) for row in top5)
    assert poster_like >= len(posters) // 2
