import json
import shutil

import pytest
import torch
from PIL import Image
from transformers import Qwen2VLProcessor

from icg_rec.encoders import MiniLMTextEncoder
from icg_rec.encoders.small import ColourGridEncoder, MemoTextEncoder
from icg_rec.errors import CheckpointError, SchemaError
from icg_rec.generation.adapter import AdapterConfig, CoverAdapter
from icg_rec.generation.backbones import (
    GeneratorConfig,
    build_pipeline,
    embedded_unet,
    load_diffusion_backbone,
)
from icg_rec.generation.pipeline import ICGPipeline
from icg_rec.generation.prompter import MetaTokenPrompter, PrompterConfig

TITLES = ["crimson night curse", "blue day song", "a b c", "night song"]


def _embedded_config(**prompter) -> GeneratorConfig:
    return GeneratorConfig(
        resolution=16, cross_attention_dim=32, num_tokens=4, user_dim=4,
        prompter=PrompterConfig(hidden_size=16, num_layers=1, num_heads=2, num_meta_tokens=3, image_prefix_tokens=2, **prompter),
    )  # fmt: skip


@pytest.fixture
def embedded(encoders) -> ICGPipeline:
    torch.manual_seed(0)
    pipe = build_pipeline(_embedded_config(), *encoders)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def test_embedded_pipeline_is_seeded_and_round_trips(embedded, encoders, covers, tmp_path):
    first = embedded(TITLES, list(covers), seed=3, num_inference_steps=2, output_type="pt").images
    again = embedded(TITLES, list(covers), seed=3, num_inference_steps=2, output_type="pt").images
    assert first.shape == (4, 3, 16, 16)
    assert 0 <= first.min() and first.max() <= 1
    torch.testing.assert_close(first, again, rtol=0, atol=0)

    embedded.save_pretrained(tmp_path)
    loaded = ICGPipeline.from_pretrained(tmp_path, *encoders)
    loaded.set_progress_bar_config(disable=True)
    torch.testing.assert_close(
        loaded(TITLES, list(covers), seed=3, num_inference_steps=2, output_type="pt").images, first
    )

    pil = embedded(TITLES[:2], list(covers[:2]), seed=3, num_inference_steps=2).images
    assert [image.size for image in pil] == [(16, 16), (16, 16)]


def test_a_cover_does_not_depend_on_its_batch(embedded, covers):
    together = embedded(
        TITLES, list(covers), seed=0, num_inference_steps=2, batch_size=4, output_type="pt"
    ).images
    alone = embedded(
        TITLES, list(covers), seed=0, num_inference_steps=2, batch_size=1, output_type="pt"
    ).images
    torch.testing.assert_close(together, alone, rtol=1e-4, atol=1e-4)


def test_zero_user_gives_the_generic_cover(embedded, covers):
    torch.nn.init.normal_(embedded.refiner.scale.weight)
    torch.nn.init.normal_(embedded.refiner.shift.weight)

    def run(users):
        return embedded(TITLES, list(covers), users=users, num_inference_steps=2, output_type="pt").images

    generic = run(None)
    torch.testing.assert_close(run(torch.zeros(4, 4)), generic, rtol=0, atol=0)
    assert (run(torch.randn(4, 4)) - generic).abs().max() > 1e-3


def test_generate_with_grad_keeps_a_graph_only_for_the_last_steps(embedded, covers):
    grad_flags = []
    embedded.unet.register_forward_pre_hook(lambda module, args: grad_flags.append(torch.is_grad_enabled()))
    batch = embedded.prompter.prepare(TITLES[:2], list(covers[:2]))
    images = embedded.generate_with_grad(
        batch, torch.randn(2, 4), embedded.noise_for([0, 1]), 3, grad_steps=1
    )
    assert grad_flags == [False, False, True]
    images.mean().backward()
    for param in (
        embedded.adapter.resampler.latents,
        embedded.prompter.meta_tokens,
        embedded.refiner.scale.weight,
    ):
        assert param.grad is not None and param.grad.abs().sum() > 0
    frozen = embedded.generate_with_grad(batch, None, embedded.noise_for([0, 1]), 3, grad_steps=0)
    assert not frozen.requires_grad


def test_plug_and_play_sd_layout_with_a_causal_lm_and_lora(sd_dir, llama_dir, encoders, covers, tmp_path):
    config = GeneratorConfig(diffusion=str(sd_dir), num_tokens=4, user_dim=4,
                             prompter=PrompterConfig(backbone=str(llama_dir), num_meta_tokens=3, lora_rank=2))  # fmt: skip
    torch.manual_seed(0)
    pipe = build_pipeline(config, image_encoder=encoders[0])
    pipe.set_progress_bar_config(disable=True)
    assert pipe.prompter.kind == "causal_lm" and pipe.vae is not None
    trainable = {name for name, p in pipe.prompter.backbone.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in name for name in trainable)
    covers_out = pipe(TITLES, list(covers), num_inference_steps=2, output_type="pt").images
    assert covers_out.shape == (4, 3, 16, 16)

    pipe.save_pretrained(tmp_path)
    assert not (tmp_path / "prompter" / "backbone").exists()  # a frozen HF backbone is referenced, not copied
    loaded = ICGPipeline.from_pretrained(tmp_path, image_encoder=encoders[0])
    loaded.set_progress_bar_config(disable=True)
    torch.testing.assert_close(
        loaded(TITLES, list(covers), num_inference_steps=2, output_type="pt").images, covers_out
    )


def _vlm_pipeline(sd_dir, vlm_dir) -> ICGPipeline:
    """SD-1.5-layout diffusion + a local VLM folder, through the same build path users call; seed 0."""
    config = GeneratorConfig(
        diffusion=str(sd_dir),
        num_tokens=4,
        prompter=PrompterConfig(backbone=str(vlm_dir), num_meta_tokens=3),
    )
    torch.manual_seed(0)
    pipe = build_pipeline(config)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def test_plug_and_play_llava_reads_the_image_through_its_own_vision_tower(sd_dir, llava_dir, covers):
    pipe = _vlm_pipeline(sd_dir, llava_dir)
    assert pipe.prompter.kind == "vlm"
    batch = pipe.prompter.prepare(TITLES[:2], list(covers[:2]))
    meta = pipe.prompter(batch)
    assert meta.shape == (2, 3, 16)
    other = pipe.prompter(pipe.prompter.prepare(TITLES[:2], list(covers[2:4])))
    assert (meta - other).abs().max() > 0  # the image changes the meta states
    assert pipe(TITLES, list(covers), num_inference_steps=2, output_type="pt").images.shape == (4, 3, 16, 16)


def test_missing_title_is_refused(embedded, covers):
    with pytest.raises(SchemaError, match="item 1 has no title"):
        embedded.prompter.prepare(["ok", ""], list(covers[:2]))
    with pytest.raises(SchemaError, match="2 titles but 1 images"):
        embedded.prompter.prepare(["ok", "fine"], list(covers[:1]))


def test_unreadable_image_is_refused(embedded, tmp_path):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a jpeg")
    with pytest.raises(SchemaError, match="broken.jpg"):
        embedded.prompter.prepare(["ok"], [broken])
    with pytest.raises(SchemaError, match=r"image 0 is a tensor of shape \(16, 16\)"):
        embedded.prompter.prepare(["ok"], [torch.rand(16, 16)])


def test_users_of_the_wrong_shape_are_refused(embedded, covers):
    with pytest.raises(ValueError, match="user_dim=4"):
        batch = embedded.prompter.prepare(TITLES[:2], list(covers[:2]))
        embedded.generate_with_grad(batch, torch.zeros(2, 5), embedded.noise_for([0, 1]), 2)


def test_adapter_not_matching_the_unet_is_refused(embedded):
    wrong = CoverAdapter(AdapterConfig(meta_dim=16, num_tokens=4, cross_attention_dim=48))
    with pytest.raises(CheckpointError, match="cross_attention_dim is 32"):
        ICGPipeline(embedded.unet, embedded.scheduler, embedded.prompter, embedded.refiner, wrong)
    narrow = CoverAdapter(AdapterConfig(meta_dim=8, num_tokens=4, cross_attention_dim=32))
    with pytest.raises(CheckpointError, match="meta widths disagree"):
        ICGPipeline(embedded.unet, embedded.scheduler, embedded.prompter, embedded.refiner, narrow)


def test_embedded_unet_reads_the_tokens_outside_cross_attention_too():
    torch.manual_seed(0)
    unet = embedded_unet(8, 32)
    for name, module in unet.named_modules():
        if name.endswith("attn2"):  # cross-attention blind to the tokens: zero keys and values
            torch.nn.init.zeros_(module.to_k.weight)
            torch.nn.init.zeros_(module.to_v.weight)
    sample, step = torch.randn(1, 3, 8, 8), torch.tensor([500])
    with torch.no_grad():
        outputs = [unet(sample, step, encoder_hidden_states=torch.randn(1, 4, 32)).sample for _ in range(2)]
    assert (outputs[0] - outputs[1]).abs().max() > 1e-3


def test_embedded_unet_width_must_suit_the_pooling_heads():
    with pytest.raises(ValueError, match="multiple of 4 \\(pooling heads\\), got 30"):
        embedded_unet(16, 30)


def test_missing_backbone_folders_are_named(tmp_path, encoders):
    with pytest.raises(CheckpointError, match="has no unet/"):
        load_diffusion_backbone(tmp_path)
    with pytest.raises(CheckpointError, match="no config.json"):
        MetaTokenPrompter.build(PrompterConfig(backbone=str(tmp_path)), *encoders)
    with pytest.raises(CheckpointError, match="has no MANIFEST.json"):
        ICGPipeline.from_pretrained(tmp_path, *encoders)


def test_a_pipeline_saved_with_colour_grid_and_minilm_loads_them_back_without_being_told(covers, tmp_path):
    torch.manual_seed(0)
    pipe = build_pipeline(
        _embedded_config(), ColourGridEncoder(grid=4, image_size=16), MemoTextEncoder(MiniLMTextEncoder())
    )
    pipe.set_progress_bar_config(disable=True)
    first = pipe(TITLES, list(covers), seed=5, num_inference_steps=2, output_type="pt").images
    pipe.save_pretrained(tmp_path / "pipe")
    saved = json.loads((tmp_path / "pipe" / "prompter" / "prompter_config.json").read_text())
    assert saved["image_encoder"] == {"kind": "colour-grid", "grid": 4, "image_size": 16}
    assert saved["text_encoder"] == {"kind": "minilm"}

    loaded = ICGPipeline.from_pretrained(tmp_path / "pipe")  # no encoders: the recorded ones
    loaded.set_progress_bar_config(disable=True)
    assert type(loaded.prompter.image_encoder) is ColourGridEncoder
    again = loaded(TITLES, list(covers), seed=5, num_inference_steps=2, output_type="pt").images
    torch.testing.assert_close(again, first, rtol=0, atol=0)


def test_custom_encoders_must_be_passed_to_load_the_folder(embedded, encoders, tmp_path):
    embedded.save_pretrained(tmp_path / "pipe")
    with pytest.raises(CheckpointError, match=r"prompter_config.json: the image encoder was a custom object "
                       r"\('tiny-colour-stats', 6-d\).*image_encoder=<the same encoder>"):  # fmt: skip
        ICGPipeline.from_pretrained(tmp_path / "pipe")
    with pytest.raises(
        CheckpointError, match=r"the text encoder was a custom object \('tiny-letters', 5-d\)"
    ):
        ICGPipeline.from_pretrained(tmp_path / "pipe", image_encoder=encoders[0])
    assert (
        ICGPipeline.from_pretrained(tmp_path / "pipe", *encoders).prompter.config == embedded.prompter.config
    )


def test_other_encoders_than_at_save_time_are_a_checkpoint_error(embedded, encoders, tmp_path):
    embedded.save_pretrained(tmp_path / "pipe")
    with pytest.raises(CheckpointError, match="saved with image encoder .*'custom'.*size mismatch"):
        ICGPipeline.from_pretrained(tmp_path / "pipe", ColourGridEncoder(), encoders[1])  # 51-d, not 6-d


def _unrecorded(folder, to):
    """A copy of a pipeline folder whose prompter config holds None encoders, as folders saved before specs."""
    from icg_rec.io import write_folder

    def rewrite(tmp):
        shutil.copytree(folder, tmp, dirs_exist_ok=True)
        (tmp / "MANIFEST.json").unlink()
        path = tmp / "prompter" / "prompter_config.json"
        path.write_text(
            json.dumps({**json.loads(path.read_text()), "image_encoder": None, "text_encoder": None})
        )

    write_folder(to, rewrite)
    return to


def test_an_old_folder_without_recorded_encoders_loads_the_defaults_only_where_they_fit(
    embedded, covers, tmp_path
):
    embedded.save_pretrained(tmp_path / "pipe")
    with pytest.raises(CheckpointError, match="None: saved before folders recorded their perception"):
        ICGPipeline.from_pretrained(_unrecorded(tmp_path / "pipe", tmp_path / "old"))  # 6-d, not 1280-d

    torch.manual_seed(0)
    pipe = build_pipeline(_embedded_config())  # the defaults: EfficientNet-Lite0 and MiniLM
    pipe.set_progress_bar_config(disable=True)
    pipe.save_pretrained(tmp_path / "default")
    loaded = ICGPipeline.from_pretrained(_unrecorded(tmp_path / "default", tmp_path / "old-default"))
    loaded.set_progress_bar_config(disable=True)
    torch.testing.assert_close(
        loaded(TITLES, list(covers), seed=1, num_inference_steps=2, output_type="pt").images,
        pipe(TITLES, list(covers), seed=1, num_inference_steps=2, output_type="pt").images,
        rtol=0,
        atol=0,
    )


def test_pil_and_path_images_are_read(embedded, covers, tmp_path):
    path = tmp_path / "cover.png"
    Image.new("RGB", (16, 16), (200, 30, 30)).save(path)
    batch = embedded.prompter.prepare(["a", "b"], [path, Image.open(path)])
    torch.testing.assert_close(batch["image_features"][0], batch["image_features"][1])


def test_plug_and_play_qwen2vl_reads_the_image_through_its_own_vision_tower(sd_dir, qwen2vl_dir, covers):
    pipe = _vlm_pipeline(sd_dir, qwen2vl_dir)
    prompter = pipe.prompter
    assert prompter.kind == "vlm"
    # its own processor class; without torchvision, in its image-only form (no video processor)
    assert isinstance(prompter.processor, Qwen2VLProcessor)
    batch = prompter.prepare(TITLES[:2], list(covers[:2]))
    image_pad = prompter.backbone.config.image_token_id
    # each 16 px cover: a 1x4x4 patch grid, merged 2x2 into 4 image tokens, and 3 meta placeholders last
    assert batch["image_grid_thw"].tolist() == [[1, 4, 4], [1, 4, 4]]
    assert (batch["input_ids"] == image_pad).sum(dim=1).tolist() == [4, 4]
    assert batch["mm_token_type_ids"].shape == batch["input_ids"].shape
    assert batch["mm_token_type_ids"].sum(dim=1).tolist() == [4, 4]  # the image tokens, not the meta tokens
    meta = prompter(batch)
    assert meta.shape == (2, 3, 16)
    other = prompter(prompter.prepare(TITLES[:2], list(covers[2:4])))
    assert (meta - other).abs().max() > 0  # the image changes the meta states
    assert pipe(TITLES, list(covers), num_inference_steps=2, output_type="pt").images.shape == (4, 3, 16, 16)


def test_plug_and_play_idefics3_reads_the_image_through_its_own_vision_tower(sd_dir, idefics3_dir, covers):
    pipe = _vlm_pipeline(sd_dir, idefics3_dir)
    prompter = pipe.prompter
    assert prompter.kind == "vlm"
    batch = prompter.prepare(TITLES[:2], list(covers[:2]))
    # one unsplit 16 px image per row; 4x4 patches pixel-shuffled into 4 <image> tokens
    assert batch["pixel_values"].shape == (2, 1, 3, 16, 16)
    image_id = prompter.backbone.config.image_token_id
    assert (batch["input_ids"] == image_id).sum(dim=1).tolist() == [4, 4]
    meta = prompter(batch)
    assert meta.shape == (2, 3, 16)
    other = prompter(prompter.prepare(TITLES[:2], list(covers[2:4])))
    assert (meta - other).abs().max() > 0  # the image changes the meta states
    assert pipe(TITLES, list(covers), num_inference_steps=2, output_type="pt").images.shape == (4, 3, 16, 16)


def test_a_diffusers_user_loads_the_folder_with_diffusion_pipeline(covers, tmp_path, monkeypatch):
    import diffusers.utils.dynamic_modules_utils as dynamic_modules
    from diffusers import DiffusionPipeline

    monkeypatch.setattr(dynamic_modules, "HF_MODULES_CACHE", str(tmp_path / "modules"))  # not ~/.cache
    torch.manual_seed(0)
    embedded = build_pipeline(_embedded_config())  # the default encoders: what a diffusers user gets
    embedded.set_progress_bar_config(disable=True)
    embedded.save_pretrained(tmp_path / "pipe")
    index = json.loads((tmp_path / "pipe" / "model_index.json").read_text())
    assert index["_class_name"] == ["pipeline_icg", "ICGPipeline"]
    assert index["prompter"] == ["icg_rec.generation.prompter", "MetaTokenPrompter"]
    loaded = DiffusionPipeline.from_pretrained(tmp_path / "pipe", trust_remote_code=True)
    assert type(loaded) is ICGPipeline
    loaded.set_progress_bar_config(disable=True)
    ours = embedded(TITLES, list(covers), seed=1, num_inference_steps=2, output_type="pt").images
    theirs = loaded(TITLES, list(covers), seed=1, num_inference_steps=2, output_type="pt").images
    torch.testing.assert_close(theirs, ours)


def test_a_missing_prompter_backbone_config_is_named_before_anything_is_built(embedded, encoders, tmp_path):
    embedded.save_pretrained(tmp_path / "pipe")
    (tmp_path / "pipe" / "prompter" / "backbone" / "config.json").unlink()
    with pytest.raises(CheckpointError, match=r"backbone/config.json"):
        ICGPipeline.from_pretrained(tmp_path / "pipe", *encoders)  # the manifest names it
    with pytest.raises(CheckpointError, match=r"backbone is incomplete: config.json is missing"):
        MetaTokenPrompter.from_pretrained(tmp_path / "pipe" / "prompter", *encoders)  # and so does the loader


def test_a_model_index_with_other_components_is_refused(embedded, encoders, tmp_path):
    from icg_rec.io import write_folder

    embedded.save_pretrained(tmp_path / "pipe")

    def retarget(folder):
        shutil.copytree(tmp_path / "pipe", folder, dirs_exist_ok=True)
        (folder / "MANIFEST.json").unlink()
        index = json.loads((folder / "model_index.json").read_text())
        index["adapter"] = ["somewhere.else", "EvilAdapter"]
        (folder / "model_index.json").write_text(json.dumps(index))

    write_folder(tmp_path / "other", retarget)
    with pytest.raises(CheckpointError, match="does not describe an ICGPipeline"):
        ICGPipeline.from_pretrained(tmp_path / "other", *encoders)
