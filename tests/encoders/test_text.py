"""Text encoders: the MiniLM default and plug-and-play Hugging Face folders."""

import numpy as np
import pytest
import torch
from transformers import BertConfig, BertModel, BertTokenizerFast

from icg_rec.encoders import HFTextEncoder, MiniLMTextEncoder, load_text_encoder
from icg_rec.errors import CheckpointError

SENTENCES = [
    "A cat sits on the mat.",
    "A kitten is sitting on a rug.",
    "Quarterly tax filing deadlines for corporations.",
]
WORDS = ["the", "cat", "dog", "sat", "on", "mat", "a", "rug", "tax", "film"]


def test_minilm_gives_unit_norm_384d_float32(minilm):
    emb = minilm.encode(SENTENCES)
    assert emb.shape == (3, 384) and emb.dtype == np.float32 and minilm.dim == 384
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    assert minilm.name.startswith("all-minilm-l6-v2@")


def test_minilm_is_deterministic_and_independent_of_batching(minilm):
    np.testing.assert_array_equal(minilm.encode(SENTENCES), minilm.encode(SENTENCES))
    one_by_one = np.concatenate([minilm.encode([s]) for s in SENTENCES])
    np.testing.assert_allclose(minilm.encode(SENTENCES, batch_size=2), one_by_one, atol=1e-5)


def test_similar_texts_are_closer_than_unrelated_ones(minilm):
    emb = minilm.encode(SENTENCES)
    cat_kitten, cat_tax, kitten_tax = emb[0] @ emb[1], emb[0] @ emb[2], emb[1] @ emb[2]
    assert cat_kitten > 0.5 > max(cat_tax, kitten_tax)


def test_default_loads_once_per_process(minilm):
    again = load_text_encoder()
    assert isinstance(again, MiniLMTextEncoder) and again.model is minilm.model


def test_empty_list_gives_an_empty_matrix(minilm):
    emb = minilm.encode([])
    assert emb.shape == (0, 384) and emb.dtype == np.float32


@pytest.mark.parametrize(
    ("texts", "message"),
    [
        (["fine", None], r"texts\[1\] must be a str, got NoneType"),
        (["fine", 3], r"texts\[1\] must be a str, got int"),
        ("a bare string", "got a single str"),
    ],
)
def test_non_string_texts_are_refused(minilm, texts, message):
    with pytest.raises(ValueError, match=message):
        minilm.encode(texts)


def test_bad_batch_size_is_refused(minilm):
    with pytest.raises(ValueError, match="batch_size must be >= 1, got 0"):
        minilm.encode(SENTENCES, batch_size=0)


def _save_tiny_bert(folder, seed: int) -> BertModel:
    folder.mkdir(parents=True)
    vocab = folder / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]) + "\n")
    BertTokenizerFast(vocab_file=str(vocab)).save_pretrained(folder)
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=5 + len(WORDS),
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=24,
    )
    model = BertModel(config).eval()
    model.save_pretrained(folder)
    return model


def test_a_saved_hf_encoder_loads_and_mean_pools(tmp_path):
    model = _save_tiny_bert(tmp_path / "tiny-bert", seed=0)
    encoder = load_text_encoder(str(tmp_path / "tiny-bert"))
    assert isinstance(encoder, HFTextEncoder) and encoder.dim == 16 and encoder.max_length == 24
    emb = encoder.encode(["the cat sat on the mat", "a dog"])

    tokenizer = BertTokenizerFast.from_pretrained(tmp_path / "tiny-bert")
    tokens = tokenizer(["the cat sat on the mat"], return_tensors="pt")
    with torch.no_grad():
        hidden = model(**tokens).last_hidden_state[0]  # (T, 16), no padding
    expected = torch.nn.functional.normalize(hidden.mean(0), dim=0).numpy()
    np.testing.assert_allclose(emb[0], expected, atol=1e-5)
    assert emb.shape == (2, 16) and encoder.name.startswith("tiny-bert@")


def test_the_name_changes_with_the_weights(tmp_path):
    _save_tiny_bert(tmp_path / "a" / "bert", seed=0)
    _save_tiny_bert(tmp_path / "b" / "bert", seed=1)
    name_a = HFTextEncoder(tmp_path / "a" / "bert").name
    name_b = HFTextEncoder(tmp_path / "b" / "bert").name
    assert name_a.split("@")[0] == name_b.split("@")[0] == "bert" and name_a != name_b


def test_a_folder_without_config_is_refused(tmp_path):
    with pytest.raises(CheckpointError, match="not a local Hugging Face checkpoint folder"):
        load_text_encoder(str(tmp_path))
