"""The embedding cache: hits skip the encoder, changed content recomputes, corruption is caught."""

import numpy as np
import pytest
from PIL import Image

from icg_rec.encoders import EmbeddingCache, encode_cached
from icg_rec.encoders.cache import text_key
from icg_rec.errors import CheckpointError, SchemaError


def test_second_call_hits_the_cache(counting_text_encoder, tmp_path):
    cache = EmbeddingCache(tmp_path)
    texts = ["a cat", "a dog", "a cat"]
    first = encode_cached(counting_text_encoder, texts, cache)
    second = encode_cached(counting_text_encoder, texts, cache)
    assert counting_text_encoder.calls == [["a cat", "a dog"]]  # once, each distinct text once
    np.testing.assert_array_equal(first, counting_text_encoder.encode(texts))
    np.testing.assert_array_equal(second, first)


def test_changed_content_is_recomputed_alone(counting_text_encoder, tmp_path):
    cache = EmbeddingCache(tmp_path)
    encode_cached(counting_text_encoder, ["a cat", "a dog"], cache)
    out = encode_cached(counting_text_encoder, ["a cat", "a dog!"], cache)
    assert counting_text_encoder.calls == [["a cat", "a dog"], ["a dog!"]]
    np.testing.assert_array_equal(out, counting_text_encoder.encode(["a cat", "a dog!"]))


def test_the_encoder_name_is_part_of_the_key(counting_text_encoder, tmp_path):
    cache = EmbeddingCache(tmp_path)
    encode_cached(counting_text_encoder, ["a cat"], cache)
    counting_text_encoder.name = "counting-text@2"
    encode_cached(counting_text_encoder, ["a cat"], cache)
    assert counting_text_encoder.calls == [["a cat"], ["a cat"]]


def test_empty_inputs_call_nothing(counting_text_encoder, tmp_path):
    out = encode_cached(counting_text_encoder, [], EmbeddingCache(tmp_path))
    assert out.shape == (0, 4) and out.dtype == np.float32 and counting_text_encoder.calls == []


def _entry(cache, encoder, text):
    return cache.path(encoder.name, text_key(encoder.name, text))


def _replace_vector_bytes(path, values):
    """Overwrites the vector at the end of an entry file in place: the file stays well-formed."""
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - values.nbytes] + values.astype(np.float32).tobytes())


@pytest.mark.parametrize(
    "corrupt",
    [
        pytest.param(
            lambda p: _replace_vector_bytes(p, np.random.default_rng(0).normal(size=4)), id="values"
        ),
        pytest.param(
            lambda p: p.write_bytes(p.read_bytes()[:-1] + bytes([p.read_bytes()[-1] ^ 1])), id="bitflip"
        ),
        pytest.param(lambda p: p.write_bytes(p.read_bytes()[:-7]), id="truncated"),
        pytest.param(lambda p: p.write_bytes(b""), id="empty"),
    ],
)
def test_a_corrupt_entry_is_recomputed_and_counted(counting_text_encoder, tmp_path, corrupt):
    cache = EmbeddingCache(tmp_path)
    first = encode_cached(counting_text_encoder, ["a cat", "a dog"], cache)
    corrupt(_entry(cache, counting_text_encoder, "a cat"))
    again = encode_cached(counting_text_encoder, ["a cat", "a dog"], cache)
    np.testing.assert_array_equal(again, first)
    assert counting_text_encoder.calls == [["a cat", "a dog"], ["a cat"]] and cache.recomputed == 1
    encode_cached(counting_text_encoder, ["a cat", "a dog"], cache)  # repaired on disk
    assert len(counting_text_encoder.calls) == 2 and cache.recomputed == 1


def test_an_entry_copied_under_another_key_is_recomputed(counting_text_encoder, tmp_path):
    cache = EmbeddingCache(tmp_path)
    encode_cached(counting_text_encoder, ["a cat", "a dog"], cache)
    cat, dog = (_entry(cache, counting_text_encoder, t) for t in ("a cat", "a dog"))
    cat.write_bytes(dog.read_bytes())
    out = encode_cached(counting_text_encoder, ["a cat"], cache)
    np.testing.assert_array_equal(out, counting_text_encoder.encode(["a cat"]))
    assert cache.recomputed == 1


def test_an_entry_of_the_wrong_shape_is_recomputed(counting_text_encoder, tmp_path):
    cache = EmbeddingCache(tmp_path)
    key = text_key(counting_text_encoder.name, "a cat")
    cache.put(counting_text_encoder.name, key, np.zeros(3, dtype=np.float32))
    with pytest.raises(CheckpointError, match=r"holds float32 \(3,\), expected float32 \(4,\)"):
        cache.get(counting_text_encoder.name, key, 4)
    out = encode_cached(counting_text_encoder, ["a cat"], cache)
    np.testing.assert_array_equal(out, counting_text_encoder.encode(["a cat"]))
    assert cache.recomputed == 1


def test_images_are_keyed_by_file_content(tiny_image_encoder, tmp_path):
    cache = EmbeddingCache(tmp_path / "cache")
    red, blue = Image.new("RGB", (12, 10), (255, 0, 0)), Image.new("RGB", (12, 10), (0, 0, 255))
    red.save(tmp_path / "a.png")
    red.save(tmp_path / "same-as-a.png")
    first = encode_cached(tiny_image_encoder, [tmp_path / "a.png", str(tmp_path / "same-as-a.png")], cache)
    assert tiny_image_encoder.calls == [1]  # identical bytes under two names: encoded once
    np.testing.assert_array_equal(first[0], first[1])

    blue.save(tmp_path / "a.png")  # same path, new content
    second = encode_cached(tiny_image_encoder, [tmp_path / "a.png", red], cache, batch_size=1)
    assert tiny_image_encoder.calls == [1, 2]  # the rewritten file and the in-memory image are new keys
    np.testing.assert_array_equal(second, tiny_image_encoder.encode([blue, red], batch_size=1))
    assert not np.array_equal(second[0], first[0])


def test_a_missing_image_file_is_named(tiny_image_encoder, tmp_path):
    with pytest.raises(SchemaError, match="nope.jpg cannot be read"):
        encode_cached(tiny_image_encoder, [tmp_path / "nope.jpg"], EmbeddingCache(tmp_path))


def test_bad_inputs_are_refused_before_encoding(counting_text_encoder, tiny_image_encoder, tmp_path):
    cache = EmbeddingCache(tmp_path)
    with pytest.raises(ValueError, match=r"texts\[0\] must be a str, got bytes"):
        encode_cached(counting_text_encoder, [b"bytes"], cache)
    with pytest.raises(ValueError, match=r"images\[1\] must be a PIL image, str or Path, got NoneType"):
        encode_cached(tiny_image_encoder, [Image.new("RGB", (4, 4)), None], cache)
    assert counting_text_encoder.calls == [] and tiny_image_encoder.calls == []


def test_misses_are_stored_chunk_by_chunk(counting_text_encoder, tmp_path, monkeypatch):
    monkeypatch.setattr("icg_rec.encoders.cache.CHUNK", 2)
    cache = EmbeddingCache(tmp_path)
    texts = ["a", "b", "c", "d", "e"]
    real_encode = counting_text_encoder.encode

    def fail_on_third_chunk(batch, **kwargs):
        if len(counting_text_encoder.calls) == 2:
            raise KeyboardInterrupt
        return real_encode(batch, **kwargs)

    monkeypatch.setattr(counting_text_encoder, "encode", fail_on_third_chunk)
    with pytest.raises(KeyboardInterrupt):
        encode_cached(counting_text_encoder, texts, cache)
    monkeypatch.setattr(counting_text_encoder, "encode", real_encode)
    out = encode_cached(counting_text_encoder, texts, cache)
    assert counting_text_encoder.calls == [["a", "b"], ["c", "d"], ["e"]]  # the rerun only encodes "e"
    np.testing.assert_array_equal(out, real_encode(texts))
