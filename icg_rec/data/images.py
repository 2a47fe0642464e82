"""Cover images from disk, as RGB PIL images, with errors that name the file."""

from pathlib import Path

from PIL import Image, UnidentifiedImageError

from icg_rec.errors import SchemaError


def load_image(path: str | Path) -> Image.Image:
    """Reads an image file fully and converts it to RGB.

    Args:
        path: an image file PIL can read (JPEG, PNG, ...).

    Returns:
        The RGB image, decoded (the file is closed).

    Raises:
        SchemaError: the file does not exist, is not an image, or is truncated/corrupt.
    """
    path = Path(path)
    if not path.is_file():
        raise SchemaError(f"image file {path} does not exist")
    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except (UnidentifiedImageError, OSError, SyntaxError) as error:
        raise SchemaError(f"image file {path} is not a readable image: {error}") from error
