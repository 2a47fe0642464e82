"""On-disk embedding cache keyed by content hash + encoder name, so re-runs do not recompute.

Each entry carries a checksum of its key and vector: a file that is truncated, altered or copied
under another key is recomputed (and counted in `EmbeddingCache.recomputed`), never returned.
"""

import hashlib
import logging
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image
from safetensors import SafetensorError, safe_open
from safetensors.numpy import save as save_safetensors
from tqdm.auto import tqdm

from icg_rec.encoders.base import ImageEncoder, ImageInput, TextEncoder, check_images, check_texts
from icg_rec.errors import CheckpointError, SchemaError
from icg_rec.io import atomic_write

logger = logging.getLogger(__name__)
# Misses are encoded and written this many at a time, so an interrupted run keeps what it computed.
CHUNK = 256


def text_key(encoder_name: str, text: str) -> str:
    """sha256 hex of the encoder name and the UTF-8 text."""
    return _digest(encoder_name, b"text", text.encode("utf-8"))


def image_key(encoder_name: str, image: ImageInput) -> str:
    """sha256 hex of the encoder name and the file bytes (path) or mode, size and pixel bytes (PIL).

    Raises:
        SchemaError: naming the file, if a path does not exist or cannot be read.
    """
    if isinstance(image, Image.Image):
        header = f"{image.mode};{image.size[0]}x{image.size[1]}".encode()
        return _digest(encoder_name, b"pixels", header + b";" + image.tobytes())
    path = Path(image)
    try:
        data = path.read_bytes()
    except OSError as err:
        raise SchemaError(f"image file {path} cannot be read: {err}") from err
    return _digest(encoder_name, b"file", data)


def _digest(encoder_name: str, kind: bytes, payload: bytes) -> str:
    digest = hashlib.sha256(encoder_name.encode("utf-8"))
    digest.update(b"\0" + kind + b"\0")
    digest.update(payload)
    return digest.hexdigest()


class EmbeddingCache:
    """A folder of one small safetensors file per embedding: `<folder>/<encoder>/<key[:2]>/<key>.safetensors`.

    Each file holds the float32 vector and, in its metadata, the sha256 of the key and the vector's
    bytes. Safe to share between processes (atomic writes); delete `<folder>/<encoder>` to drop one
    encoder's entries.

    Args:
        folder: root folder; created on first write.

    Attributes:
        recomputed: entries found corrupt (unreadable, wrong shape, checksum mismatch) and recomputed
            by `encode_cached` since this object was made.
    """

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.recomputed = 0

    def path(self, encoder_name: str, key: str) -> Path:
        """Where the embedding for `key` under `encoder_name` lives."""
        slug = re.sub(r"[^A-Za-z0-9._@-]+", "_", encoder_name)
        return self.folder / slug / key[:2] / f"{key}.safetensors"

    def get(self, encoder_name: str, key: str, dim: int) -> np.ndarray | None:
        """The cached float32 vector (dim,), or None if absent.

        Raises:
            CheckpointError: naming the file, if it is truncated, unreadable, of the wrong shape/dtype,
                or its checksum does not match its key and vector.
        """
        path = self.path(encoder_name, key)
        if not path.is_file():
            return None
        try:
            with safe_open(str(path), framework="np") as entry:
                vector = entry.get_tensor("embedding")
                stored = (entry.metadata() or {}).get("sha256")
        except (SafetensorError, OSError, ValueError, KeyError) as err:
            raise CheckpointError(f"cache file {path} is corrupt ({err})") from err
        if vector.shape != (dim,) or vector.dtype != np.float32:
            raise CheckpointError(
                f"cache file {path} holds {vector.dtype} {vector.shape}, expected float32 ({dim},)"
            )
        if stored != _checksum(key, vector):
            raise CheckpointError(
                f"cache file {path} fails its checksum: its vector is not the one stored for {key}"
            )
        return vector

    def put(self, encoder_name: str, key: str, vector: np.ndarray) -> None:
        """Stores a float32 vector (dim,) with its checksum, atomically."""
        vector = np.ascontiguousarray(vector, dtype=np.float32)
        data = save_safetensors({"embedding": vector}, metadata={"sha256": _checksum(key, vector)})
        atomic_write(self.path(encoder_name, key), lambda tmp: tmp.write_bytes(data))


def _checksum(key: str, vector: np.ndarray) -> str:
    return hashlib.sha256(key.encode() + b"\0" + vector.tobytes()).hexdigest()


def encode_cached(
    encoder: TextEncoder | ImageEncoder,
    inputs: Sequence[str] | Sequence[ImageInput],
    cache: EmbeddingCache,
    batch_size: int | None = None,
    progress: bool = False,
) -> np.ndarray:
    """`encoder.encode(inputs)`, computing only what the cache lacks (each distinct input once).

    Misses are encoded CHUNK at a time and stored after each chunk. A corrupt entry is a miss too: it is
    recomputed, overwritten, counted in `cache.recomputed` and logged with its file.

    Args:
        encoder: a TextEncoder (inputs are texts) or an ImageEncoder (PIL images or file paths).
        inputs: what to embed.
        cache: where embeddings are kept, keyed by content hash + `encoder.name`.
        batch_size: passed to `encoder.encode`; None keeps the encoder's default.
        progress: show a tqdm bar over the misses.

    Returns:
        float32 array (len(inputs), encoder.dim), row i for inputs[i].
    """
    if isinstance(encoder, ImageEncoder):
        inputs = check_images(inputs)
        keys = [image_key(encoder.name, image) for image in inputs]
    else:
        inputs = check_texts(inputs)
        keys = [text_key(encoder.name, text) for text in inputs]
    found = {}
    misses: dict[str, int] = {}  # key -> first position needing it
    for i, key in enumerate(keys):
        if key in found or key in misses:
            continue
        try:
            vector = cache.get(encoder.name, key, encoder.dim)
        except CheckpointError as err:
            logger.warning("recomputing a corrupt embedding: %s", err)
            cache.recomputed += 1
            vector = None
        if vector is None:
            misses[key] = i
        else:
            found[key] = vector
    kwargs = {} if batch_size is None else {"batch_size": batch_size}
    pending = list(misses.items())
    bar = tqdm(
        total=len(pending), desc=f"encode {encoder.name}", unit="input", disable=not progress or not pending
    )
    for start in range(0, len(pending), CHUNK):
        chunk = pending[start : start + CHUNK]
        fresh = encoder.encode([inputs[i] for _, i in chunk], **kwargs)
        for (key, _), vector in zip(chunk, fresh, strict=True):
            cache.put(encoder.name, key, vector)
            found[key] = vector
        bar.update(len(chunk))
    bar.close()
    out = np.empty((len(keys), encoder.dim), dtype=np.float32)
    for i, key in enumerate(keys):
        out[i] = found[key]
    return out
