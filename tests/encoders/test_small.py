import numpy as np
import pytest
import torch

from icg_rec.encoders.base import TextEncoder
from icg_rec.encoders.small import ColourGridEncoder, MemoTextEncoder


class CountingText(TextEncoder):
    name, dim = "counting", 2

    def __init__(self):
        self.seen: list[str] = []

    def encode(self, texts, batch_size=64, progress=False):
        self.seen.extend(texts)
        return np.array([[len(t), t.count("a")] for t in texts], dtype=np.float32)


def test_colour_grid_reads_cell_colours_and_spread():
    encoder = ColourGridEncoder(grid=2, image_size=4)
    pixels = torch.zeros(1, 3, 4, 4)
    pixels[0, 0, :2, :2] = 1.0  # red top-left quarter
    out = encoder(pixels)
    assert out.shape == (1, encoder.dim) == (1, 15)
    assert out[0, :4].tolist() == [1.0, 0.0, 0.0, 0.0]  # red channel per cell
    assert out[0, 12].item() == pytest.approx(torch.tensor([1.0] * 4 + [0.0] * 12).std().item())


def test_colour_grid_is_differentiable_and_refuses_bad_pixels():
    encoder = ColourGridEncoder()
    pixels = torch.rand(2, 3, 16, 16, requires_grad=True)
    encoder(pixels).sum().backward()
    assert pixels.grad is not None and pixels.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="must lie in"):
        encoder(torch.full((1, 3, 16, 16), 255.0))


def test_memo_text_encodes_each_text_once():
    inner = CountingText()
    memo = MemoTextEncoder(inner)
    first = memo.encode(["ab", "a", "ab"])
    second = memo.encode(["a", "ccc"])
    assert inner.seen == ["a", "ab", "ccc"]
    np.testing.assert_array_equal(first, [[2, 1], [1, 1], [2, 1]])
    np.testing.assert_array_equal(second, [[1, 1], [3, 0]])
    assert memo.encode([]).shape == (0, 2)
    with pytest.raises(ValueError, match="single str"):
        memo.encode("ab")
