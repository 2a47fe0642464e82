"""Encoder throughput on MovieLens: the default text and image encoders, cold vs cached.

    python -m eval.bench_encoders [--images 256] [--threads N]

Texts: MiniLM on the item texts of the 2,943 MovieLens items that have a poster. Images:
EfficientNet-Lite0 on the first `--images` of those posters (0 = all 2,943), read in place from the
shared data folder. Each is run through `encode_cached` twice against a fresh temporary cache: the
first pass encodes everything (cold), the second reads the cache (cached). Wall and CPU seconds are
both printed: on a shared box CPU seconds are the steadier number. Then the EfficientNet backbone alone
on 16 posters in NHWC (channels_last, what the encoder uses) vs NCHW memory layout, same weights. The
last line is `texts_per_s=A images_per_s=B cached_images_per_s=C posters_all_est_s=D nhwc_speedup=E`.
"""

import argparse
import tempfile
import time
from collections.abc import Callable

import numpy as np
import torch

from icg_rec.data.images import load_image
from icg_rec.data.movielens import load_movielens_with_posters
from icg_rec.encoders import EmbeddingCache, encode_cached, load_image_encoder, load_text_encoder
from icg_rec.encoders.base import pil_to_pixels, resize_pixels
from icg_rec.encoders.efficientnet import EfficientNetLite0Encoder
from icg_rec.encoders.items import item_texts


def timed(fn: Callable[[], np.ndarray]) -> tuple[float, float, np.ndarray]:
    """(wall seconds, CPU seconds of this process, result) of one call."""
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return time.perf_counter() - wall, time.process_time() - cpu, out


@torch.inference_mode()
def layout_speedup(encoder: EfficientNetLite0Encoder, posters: list[str]) -> float:
    """CPU-seconds ratio NCHW / NHWC of the backbone on the same normalised posters (best of 2 each)."""
    pixels = torch.cat([resize_pixels(pil_to_pixels(load_image(p)), 224) for p in posters]).clamp(0, 1)
    x = (pixels - encoder.mean) / encoder.std  # (n, 3, 224, 224)
    cpu = {}
    for layout in (torch.contiguous_format, torch.channels_last):
        encoder.model.to(memory_format=layout)
        x_layout = x.contiguous(memory_format=layout)
        cpu[layout] = min(timed(lambda xl=x_layout: encoder.model.extract_features(xl))[1] for _ in range(2))
    encoder.model.to(memory_format=torch.channels_last)
    print(
        f"backbone on {len(posters)} posters: NCHW {cpu[torch.contiguous_format]:.2f} CPU s, "
        f"NHWC {cpu[torch.channels_last]:.2f} CPU s"
    )
    return cpu[torch.contiguous_format] / cpu[torch.channels_last]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=256, help="posters to encode (0 = all)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)

    items = load_movielens_with_posters().items
    texts = item_texts(items)
    posters = items["image_path"].to_list()
    sample = posters if args.images == 0 else posters[: args.images]
    print(f"{len(texts):,} items with posters; torch threads {torch.get_num_threads()}")

    load_s, _, text_encoder = timed(load_text_encoder)
    image_load_s, _, image_encoder = timed(load_image_encoder)
    print(f"load: text encoder {load_s:.1f} s, image encoder {image_load_s:.1f} s (first in process)")

    with tempfile.TemporaryDirectory() as folder:
        cache = EmbeddingCache(folder)
        text_cold = timed(lambda: encode_cached(text_encoder, texts, cache, progress=True))
        text_hot = timed(lambda: encode_cached(text_encoder, texts, cache))
        image_cold = timed(lambda: encode_cached(image_encoder, sample, cache, progress=True))
        image_hot = timed(lambda: encode_cached(image_encoder, sample, cache))
    assert np.array_equal(text_cold[2], text_hot[2]) and np.array_equal(image_cold[2], image_hot[2])

    for what, n, cold, hot in [
        (f"texts ({text_encoder.name})", len(texts), text_cold, text_hot),
        (f"images ({image_encoder.name})", len(sample), image_cold, image_hot),
    ]:
        print(
            f"{what}, n={n:,}: cold {cold[0]:.1f} s wall / {cold[1]:.1f} s CPU ({n / cold[0]:.1f}/s); "
            f"cached {hot[0]:.2f} s wall / {hot[1]:.2f} s CPU ({n / hot[0]:.0f}/s)"
        )
    posters_est = image_cold[0] * len(posters) / len(sample)
    cpu_est = image_cold[1] * len(posters) / len(sample)
    print(
        f"all {len(posters):,} posters, cold: {posters_est:.0f} s wall / {cpu_est:.0f} s CPU "
        f"(scaled from {len(sample):,})"
    )
    speedup = layout_speedup(image_encoder, posters[:16])
    print(
        f"texts_per_s={len(texts) / text_cold[0]:.1f} images_per_s={len(sample) / image_cold[0]:.2f} "
        f"cached_images_per_s={len(sample) / image_hot[0]:.0f} posters_all_est_s={posters_est:.0f} "
        f"nhwc_speedup={speedup:.2f}"
    )


if __name__ == "__main__":
    main()
