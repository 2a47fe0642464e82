"""Cover images from disk, as RGB PIL images, with errors that name the file."""

import warnings
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from icg_rec.errors import SchemaError

# Largest image accepted, in pixels (width x height): 50 megapixels decode to 150 MB of RGB. Covers and
# posters are far smaller; a larger file is refused from its header, before any pixel is decoded (a
# "decompression bomb" of a few KB can claim billions of pixels). Downscale such images beforehand.
MAX_IMAGE_PIXELS = 50_000_000


def load_image(path: str | Path) -> Image.Image:
    """Reads an image file fully and converts it to RGB.

    Args:
        path: an image file PIL can read (JPEG, PNG, ...) of at most MAX_IMAGE_PIXELS pixels.

    Returns:
        The RGB image, decoded (the file is closed).

    Raises:
        SchemaError: the file does not exist, is not an image, is truncated/corrupt, or claims more
            than MAX_IMAGE_PIXELS pixels (checked from the header, before decoding).
    """
    path = Path(path)
    if not path.is_file():
        raise SchemaError(f"image file {path} does not exist")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # the limit below is stricter
            with Image.open(path) as image:
                width, height = image.size
                if width * height > MAX_IMAGE_PIXELS:
                    raise SchemaError(_too_large(path, f"{width} x {height} pixels"))
                return image.convert("RGB")
    except Image.DecompressionBombError as error:
        raise SchemaError(_too_large(path, "PIL refused it as a decompression bomb")) from error
    except (UnidentifiedImageError, OSError, SyntaxError) as error:
        raise SchemaError(f"image file {path} is not a readable image: {error}") from error


def _too_large(path: Path, size: str) -> str:
    return (
        f"image file {path} is too large ({size}); the limit is MAX_IMAGE_PIXELS = "
        f"{MAX_IMAGE_PIXELS:,} pixels: downscale it first"
    )
