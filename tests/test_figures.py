"""Contact sheets and figures: exact pixels, captions, and no pyplot / backend switch."""

import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from icg_rec.figures import LABEL_HEIGHT, contact_sheet, new_figure, save_figure


def test_contact_sheet_keeps_the_exact_pixels(tmp_path):
    rows = [torch.rand(3, 3, 4, 5, generator=torch.Generator().manual_seed(0)), torch.zeros(2, 3, 4, 5)]
    sheet = np.asarray(Image.open(contact_sheet(tmp_path / "s.png", rows)))
    assert sheet.shape == (8, 15, 3)
    expected = (rows[0][1].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    np.testing.assert_array_equal(sheet[:4, 5:10], expected)
    assert (sheet[4:, 10:] == 255).all()  # the short row is padded with white


def test_labelled_sheet_has_a_caption_strip_and_a_title(tmp_path):
    path = contact_sheet(
        tmp_path / "s.png", [torch.ones(2, 3, 16, 16)], labels=[["7", "8"]], title="cohort 0"
    )
    assert Image.open(path).size == (32, LABEL_HEIGHT + 16 + LABEL_HEIGHT)
    with pytest.raises(ValueError, match="one caption per cover"):
        contact_sheet(tmp_path / "t.png", [torch.ones(2, 3, 16, 16)], labels=[["7"]])


def test_figures_leave_pyplot_and_the_backend_alone(tmp_path):
    code = (
        "import sys, matplotlib; matplotlib.use('svg'); "
        "from icg_rec.figures import new_figure, save_figure; "
        f"fig, ax = new_figure(); ax.plot([0, 1]); save_figure(fig, {str(tmp_path / 'f.png')!r}); "
        "print(matplotlib.get_backend(), 'matplotlib.pyplot' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["svg", "False"]
    assert (tmp_path / "f.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    fig, _ = new_figure()
    assert save_figure(fig, tmp_path / "g.png").is_file()
