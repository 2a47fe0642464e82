"""The GPU refresh benchmark's CPU smoke mode runs every part it can, and ends with its result line."""

import json
import re

from eval.gpu.bench_refresh_gpu import main


def test_cpu_smoke_runs_the_arms_alignment_and_flop_count(tmp_path, capsys):
    results = main(
        ["--cpu-smoke", "--align", "--arms", "stock", "icg_fp16", "icg_writers", "icg_channels_last",
         "--out", str(tmp_path / "bench.json")]
    )  # fmt: skip
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert re.fullmatch(r"covers_per_s=[\d.]+ roofline_share=[\d.]+ speedup_vs_stock=[\d.]+", last), last
    assert set(results["covers_per_s"]) == {"stock", "icg_fp16", "icg_writers", "icg_channels_last"}
    assert all(rate > 0 for rate in results["covers_per_s"].values())
    assert results["unet_flops_per_cover"] == 2 * 2 * results["unet_forward_flops_per_sample"] > 0
    assert set(results["align"]) == {"checkpointing_False", "checkpointing_True"}
    assert json.loads((tmp_path / "bench.json").read_text())["best_stock"] == "stock"
