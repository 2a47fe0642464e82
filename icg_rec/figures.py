"""Pictures the library writes: contact sheets of covers, and matplotlib figures without pyplot.

Nothing here touches pyplot or the global matplotlib backend, so a notebook user's backend is left
alone: plots are drawn on `matplotlib.figure.Figure` objects and rendered by the Agg canvas directly.
"""

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from icg_rec.io import atomic_write

LABEL_HEIGHT = 12  # pixels of the caption strip under each row of a labelled contact sheet


def contact_sheet(
    path: str | Path,
    rows: Sequence[torch.Tensor],
    labels: Sequence[Sequence[str]] | None = None,
    title: str | None = None,
) -> Path:
    """Writes a PNG grid of covers at their exact pixels: one grid row per tensor.

    Args:
        path: the PNG to write (atomically).
        rows: tensors (n_i, 3, H, W) in [0, 1], all of one H and W; a shorter row is padded with white.
        labels: optional captions, one sequence per row with one string per cover (e.g. item ids).
        title: optional line of text above the grid.

    Returns:
        The path written.
    """
    if not rows:
        raise ValueError("a contact sheet needs at least one row of covers")
    height, width = rows[0].shape[-2:]
    if any(row.ndim != 4 or row.shape[1] != 3 or row.shape[-2:] != (height, width) for row in rows):
        raise ValueError(
            f"rows must be (n, 3, {height}, {width}) tensors, got {[tuple(r.shape) for r in rows]}"
        )
    if labels is not None and [len(x) for x in labels] != [len(r) for r in rows]:
        raise ValueError("labels must hold one caption per cover of each row")
    cols = max(len(row) for row in rows)
    strip = LABEL_HEIGHT if labels is not None else 0
    top = LABEL_HEIGHT if title else 0
    sheet = Image.new("RGB", (cols * width, top + len(rows) * (height + strip)), "white")
    draw = ImageDraw.Draw(sheet)
    if title:
        draw.text((2, 0), title, fill="black")
    for r, row in enumerate(rows):
        y = top + r * (height + strip)
        pixels = (
            row.detach().float().clamp(0, 1).cpu().permute(0, 2, 3, 1).numpy() * 255
        ).round()  # (n, H, W, 3)
        for c, cover in enumerate(pixels.astype(np.uint8)):
            sheet.paste(Image.fromarray(cover), (c * width, y))
            if labels is not None:
                draw.text((c * width + 1, y + height), str(labels[r][c])[: max(1, width // 6)], fill="black")
    return atomic_write(path, lambda tmp: sheet.save(tmp, format="PNG"))


def new_figure(width: float = 6.0, height: float = 4.5):
    """A matplotlib Figure with one Axes, on an Agg canvas of its own (no pyplot, no backend switch).

    Returns:
        `(figure, axes)`.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height))
    FigureCanvasAgg(figure)
    return figure, figure.subplots()


def save_figure(figure, path: str | Path, dpi: int = 100) -> Path:
    """Lays out `figure` and writes it as a PNG, atomically."""
    figure.tight_layout()
    return atomic_write(path, lambda tmp: figure.savefig(tmp, format="png", dpi=dpi))
