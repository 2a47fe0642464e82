"""The ImageEncoder base: batching, progress, and the frozen-stays-in-eval rule."""

import numpy as np
import pytest
import torch
from PIL import Image


def test_batching_does_not_change_rows(tiny_image_encoder):
    images = [Image.new("RGB", (9 + i, 7), (30 * i, 255 - 30 * i, 90)) for i in range(5)]
    np.testing.assert_allclose(
        tiny_image_encoder.encode(images, batch_size=2),
        tiny_image_encoder.encode(images, batch_size=5),
        atol=1e-6,
    )
    with pytest.raises(ValueError, match="batch_size must be >= 1, got 0"):
        tiny_image_encoder.encode(images, batch_size=0)


def test_progress_bar_names_the_encoder(tiny_image_encoder, capsys):
    tiny_image_encoder.encode([Image.new("RGB", (8, 8))], progress=True)
    assert "encode images (tiny-image@1)" in capsys.readouterr().err


def test_only_an_unfrozen_encoder_enters_training_mode(tiny_image_encoder):
    assert not tiny_image_encoder.train().training
    tiny_image_encoder.requires_grad_(True)
    assert tiny_image_encoder.train().training
    assert not tiny_image_encoder.freeze().training


def test_rounding_slack_on_the_pixel_range_is_accepted(tiny_image_encoder):
    pixels = torch.full((1, 3, 8, 8), 1.0 + 1e-6)
    assert tiny_image_encoder(pixels).shape == (1, 5)
