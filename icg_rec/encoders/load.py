"""Encoders by spec, and specs of encoders: a saved model records its perception so loading rebuilds it.

A spec is a small dict: `{"kind": "colour-grid", "grid": 4, "image_size": 16}`, `{"kind":
"efficientnet-lite0"}`, `{"kind": "minilm"}` or `{"kind": "hf", "path": "/abs/folder"}`. An encoder
icg_rec cannot rebuild (a user's own object, or a subclass of a built-in one) is described as
`{"kind": "custom", "name": ..., "dim": ...}`; loading that spec refuses, and the caller passes the encoder.
"""

from pathlib import Path
from typing import Any

from icg_rec.encoders.base import ImageEncoder, TextEncoder
from icg_rec.encoders.efficientnet import EfficientNetLite0Encoder
from icg_rec.encoders.hf_image import HFImageEncoder
from icg_rec.encoders.small import ColourGridEncoder, MemoTextEncoder
from icg_rec.encoders.text import HFTextEncoder, MiniLMTextEncoder
from icg_rec.errors import CheckpointError

CUSTOM = "custom"
# kind -> the keys its spec holds besides "kind"
IMAGE_KINDS = {"colour-grid": {"grid", "image_size"}, "efficientnet-lite0": set(), "hf": {"path"}}
TEXT_KINDS = {"minilm": set(), "hf": {"path"}}

Spec = dict[str, Any]


def load_text_encoder(spec: Spec | str | Path | None = None) -> TextEncoder:
    """A text encoder.

    Args:
        spec: a spec dict (see the module docstring); a local Hugging Face encoder folder (mean pooling
            + L2 norm); or None for all-MiniLM-L6-v2 (384-d, shipped in a Python package).

    Returns:
        The encoder, ready to `encode`.

    Raises:
        CheckpointError: the spec is malformed, or describes a custom encoder (pass that one instead).
    """
    if spec is None:
        return MiniLMTextEncoder()
    if not isinstance(spec, dict):
        return HFTextEncoder(spec)
    kind = _check(spec, TEXT_KINDS, "text")
    return MiniLMTextEncoder() if kind == "minilm" else HFTextEncoder(spec["path"])


def load_image_encoder(spec: Spec | str | Path | None = None) -> ImageEncoder:
    """An image encoder (frozen, eval mode, on CPU; move it with `.to(device)`).

    Args:
        spec: a spec dict (see the module docstring); a local CLIP / SigLIP checkpoint folder; or None
            for EfficientNet-Lite0 ImageNet features (1280-d, shipped in a Python package).

    Returns:
        The encoder, ready to `encode` or to call on pixel tensors.

    Raises:
        CheckpointError: the spec is malformed, or describes a custom encoder (pass that one instead).
    """
    if spec is None:
        return EfficientNetLite0Encoder()
    if not isinstance(spec, dict):
        return HFImageEncoder(spec)
    kind = _check(spec, IMAGE_KINDS, "image")
    if kind == "colour-grid":
        return ColourGridEncoder(grid=spec["grid"], image_size=spec["image_size"]).freeze()
    return EfficientNetLite0Encoder() if kind == "efficientnet-lite0" else HFImageEncoder(spec["path"])


def describe_text_encoder(encoder: Any) -> Spec:
    """The spec `load_text_encoder` rebuilds `encoder` from; a MemoTextEncoder is described by its inner one.

    Args:
        encoder: any object with `name` and `dim` that encodes texts.

    Returns:
        The spec; `{"kind": "custom", "name", "dim"}` for anything but icg_rec's own classes (exactly).
    """
    if type(encoder) is MemoTextEncoder:
        return describe_text_encoder(encoder.encoder)
    if type(encoder) is MiniLMTextEncoder:
        return {"kind": "minilm"}
    if type(encoder) is HFTextEncoder:
        return {"kind": "hf", "path": str(encoder.path)}
    return _custom(encoder)


def describe_image_encoder(encoder: Any) -> Spec:
    """The spec `load_image_encoder` rebuilds `encoder` from.

    Args:
        encoder: any object with `name` and `dim` that encodes images.

    Returns:
        The spec; `{"kind": "custom", "name", "dim"}` for anything but icg_rec's own classes (exactly).
    """
    if type(encoder) is ColourGridEncoder:
        return {"kind": "colour-grid", "grid": encoder.grid, "image_size": encoder.image_size}
    if type(encoder) is EfficientNetLite0Encoder:
        return {"kind": "efficientnet-lite0"}
    if type(encoder) is HFImageEncoder:
        return {"kind": "hf", "path": str(encoder.path)}
    return _custom(encoder)


def _custom(encoder: Any) -> Spec:
    return {
        "kind": CUSTOM,
        "name": str(getattr(encoder, "name", type(encoder).__name__)),
        "dim": int(encoder.dim),
    }


def _check(spec: Spec, kinds: dict[str, set[str]], role: str) -> str:
    """The spec's kind, after refusing a custom encoder, an unknown kind, or missing/extra keys."""
    kind = spec.get("kind")
    if kind == CUSTOM:
        raise CheckpointError(
            f"the {role} encoder was a custom object ({spec.get('name')!r}, {spec.get('dim')}-d) that icg_rec "
            f"cannot rebuild; load it in Python and pass it, e.g. "
            f"ICGPipeline.from_pretrained(folder, {role}_encoder=<the same encoder>)"
        )
    if kind not in kinds:
        raise CheckpointError(
            f"unknown {role} encoder kind {kind!r} in {spec}; expected one of {sorted(kinds)}"
        )
    if set(spec) - {"kind"} != kinds[kind]:
        raise CheckpointError(
            f"{role} encoder spec {spec} must hold exactly {sorted(kinds[kind])} besides kind"
        )
    return kind
