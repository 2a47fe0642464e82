"""Encoder specs: every built-in encoder is described exactly and rebuilt from its description."""

import numpy as np
import pytest
import torch
from transformers import (
    BertConfig,
    BertModel,
    BertTokenizerFast,
    CLIPVisionConfig,
    CLIPVisionModelWithProjection,
)

from icg_rec.encoders import (
    EfficientNetLite0Encoder,
    HFImageEncoder,
    HFTextEncoder,
    MiniLMTextEncoder,
    describe_image_encoder,
    describe_text_encoder,
    load_image_encoder,
    load_text_encoder,
)
from icg_rec.encoders.small import ColourGridEncoder, MemoTextEncoder
from icg_rec.errors import CheckpointError


def test_a_colour_grid_is_rebuilt_from_its_spec():
    spec = describe_image_encoder(ColourGridEncoder(grid=2, image_size=8))
    assert spec == {"kind": "colour-grid", "grid": 2, "image_size": 8}
    again = load_image_encoder(spec)
    assert type(again) is ColourGridEncoder and (again.grid, again.image_size, again.name) == (
        2,
        8,
        "colour-grid-2x2@8",
    )


def test_the_packaged_defaults_are_described_by_kind(lite0, minilm):
    assert describe_image_encoder(lite0) == {"kind": "efficientnet-lite0"}
    assert type(load_image_encoder({"kind": "efficientnet-lite0"})) is EfficientNetLite0Encoder
    assert (
        describe_text_encoder(minilm) == describe_text_encoder(MemoTextEncoder(minilm)) == {"kind": "minilm"}
    )
    assert load_text_encoder({"kind": "minilm"}).name == minilm.name


def test_hf_folders_are_described_by_absolute_path(tmp_path, monkeypatch):
    torch.manual_seed(0)
    vision = CLIPVisionConfig(
        hidden_size=32, intermediate_size=37, num_hidden_layers=1, num_attention_heads=2, image_size=32,
        patch_size=8, projection_dim=16,
    )  # fmt: skip
    CLIPVisionModelWithProjection(vision).save_pretrained(tmp_path / "clip")
    (tmp_path / "bert").mkdir()
    (tmp_path / "bert" / "vocab.txt").write_text("[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nthe\ncat\n")
    BertTokenizerFast(vocab_file=str(tmp_path / "bert" / "vocab.txt")).save_pretrained(tmp_path / "bert")
    bert = BertConfig(
        vocab_size=7, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
        max_position_embeddings=16,
    )  # fmt: skip
    BertModel(bert).save_pretrained(tmp_path / "bert")
    monkeypatch.chdir(tmp_path)
    image, text = load_image_encoder("clip"), load_text_encoder("bert")
    assert describe_image_encoder(image) == {"kind": "hf", "path": str(tmp_path / "clip")}
    assert describe_text_encoder(MemoTextEncoder(text)) == {"kind": "hf", "path": str(tmp_path / "bert")}
    monkeypatch.chdir("/")
    image_again = load_image_encoder(describe_image_encoder(image))
    text_again = load_text_encoder(describe_text_encoder(text))
    assert isinstance(image_again, HFImageEncoder) and image_again.name == image.name
    assert isinstance(text_again, HFTextEncoder) and text_again.name == text.name
    pixels = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(image_again(pixels), image(pixels), rtol=0, atol=0)
    np.testing.assert_array_equal(text_again.encode(["the cat"]), text.encode(["the cat"]))


class OtherGrid(ColourGridEncoder):
    """A subclass may embed otherwise: it is not the built-in class, so it is not described as one."""


def test_other_encoders_are_described_as_custom(tiny_image_encoder, counting_text_encoder):
    assert describe_image_encoder(tiny_image_encoder) == {"kind": "custom", "name": "tiny-image@1", "dim": 5}
    assert describe_image_encoder(OtherGrid(grid=1)) == {
        "kind": "custom",
        "name": "colour-grid-1x1@16",
        "dim": 6,
    }
    memo = MemoTextEncoder(counting_text_encoder)
    assert describe_text_encoder(memo) == {"kind": "custom", "name": "counting-text@1", "dim": 4}


@pytest.mark.parametrize(
    ("load", "spec", "message"),
    [
        (load_image_encoder, {"kind": "custom", "name": "mine", "dim": 5}, r"custom object \('mine', 5-d\)"),
        (load_text_encoder, {"kind": "custom", "name": "mine", "dim": 4}, r"text_encoder=<the same encoder>"),
        (load_image_encoder, {"kind": "minilm"}, r"unknown image encoder kind 'minilm'.*'colour-grid'"),
        (
            load_image_encoder,
            {"kind": "colour-grid", "grid": 4},
            r"must hold exactly \['grid', 'image_size'\]",
        ),
        (load_text_encoder, {"kind": "minilm", "path": "x"}, r"must hold exactly \[\] besides kind"),
    ],
)
def test_a_spec_that_cannot_be_rebuilt_is_refused(load, spec, message):
    with pytest.raises(CheckpointError, match=message):
        load(spec)


def test_a_string_or_none_still_means_a_folder_or_the_default(minilm):
    assert type(load_text_encoder(None)) is MiniLMTextEncoder
    with pytest.raises(CheckpointError, match="no config.json"):
        load_image_encoder("minilm")  # a string is a folder, never a kind
