"""`icg-rec cohorts fit` and `icg-rec refresh`."""

import argparse
from pathlib import Path


def register(groups: argparse._SubParsersAction) -> None:
    """Registers the `cohorts` group and the `refresh` command."""
    from icg_rec.argtypes import non_negative_float, non_negative_int, positive_int, seed

    cohorts = groups.add_parser("cohorts", help="user cohorts with stable ids").add_subparsers(
        dest="command", required=True
    )
    fit = cohorts.add_parser("fit", help="k-means over user embeddings, keeping the ids of --previous")
    fit.add_argument("--users", type=Path, required=True, help="parquet: user_id, embedding (float list)")
    fit.add_argument("--n-cohorts", type=positive_int, default=8)
    fit.add_argument("--previous", type=Path, default=None, help="cohorts folder of the last fit")
    fit.add_argument("--seed", type=seed, default=0)
    fit.add_argument("--out", type=Path, required=True, help="cohorts folder to write")
    fit.set_defaults(run=_run_fit)

    refresh = groups.add_parser("refresh", help="generate the covers of every (item, cohort) that changed")
    refresh.add_argument("--pipeline", type=Path, required=True, help="ICGPipeline folder (save_pretrained)")
    refresh.add_argument("--cohorts", type=Path, required=True, help="cohorts folder (icg-rec cohorts fit)")
    refresh.add_argument(
        "--items", type=Path, required=True, help="parquet: item_id, title, text, image_path"
    )
    refresh.add_argument("--out", type=Path, required=True, help="refresh folder: covers/ + manifest.parquet")
    refresh.add_argument("--steps", type=positive_int, default=20, help="DDIM steps per cover")
    refresh.add_argument(
        "--guidance", type=non_negative_float, default=3.0, help="classifier-free guidance weight"
    )
    refresh.add_argument("--batch-size", type=positive_int, default=16)
    refresh.add_argument("--seed", type=seed, default=0)
    refresh.add_argument(
        "--device", default="cpu", help="cpu or cuda[:N]: where it computes (icg_rec.device)"
    )
    refresh.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], default="float32")
    refresh.add_argument(
        "--compile", choices=["off", "default", "max-autotune-no-cudagraphs", "reduce-overhead"], default="off",
        help="torch.compile the UNet (reduce-overhead: CUDA graphs, CUDA only)",
    )  # fmt: skip
    refresh.add_argument("--channels-last", action="store_true", help="NHWC UNet and decoder")
    refresh.add_argument("--fuse-qkv", action="store_true", help="fused q/k/v attention projections")
    refresh.add_argument("--tiny-decoder", type=Path, default=None, help="local TAEF2 folder (32-ch latents)")
    refresh.add_argument(
        "--writers", type=non_negative_int, default=0, help="PNG writer threads (0 = inline)"
    )
    refresh.set_defaults(run=_run_refresh)


def _run_fit(args: argparse.Namespace) -> None:
    from icg_rec.cohorts.commands import fit_cohorts

    fit_cohorts(args)


def _run_refresh(args: argparse.Namespace) -> None:
    from icg_rec.cohorts.commands import refresh

    refresh(args)
