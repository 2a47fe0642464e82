"""icg_rec.generation: the ICG cover generator (meta-token prompter, user refiner, adapter, diffusers pipeline).

Importing the package is light: each name imports its submodule (torch, diffusers, ...) on first use.
"""

from typing import TYPE_CHECKING

from icg_rec._lazy import attach

if TYPE_CHECKING:
    from icg_rec.generation.adapter import AdapterConfig, CoverAdapter, prompt_embeds
    from icg_rec.generation.backbones import GeneratorConfig, build_pipeline, load_diffusion_backbone
    from icg_rec.generation.pipeline import ICGPipeline, ICGPipelineOutput
    from icg_rec.generation.prompter import MetaTokenPrompter, PrompterConfig
    from icg_rec.generation.refiner import RefinerConfig, UserRefiner
    from icg_rec.generation.warmup import WarmupConfig, WarmupTrainer

__getattr__, __dir__, __all__ = attach(
    __name__,
    {
        "adapter": ["AdapterConfig", "CoverAdapter", "prompt_embeds"],
        "backbones": ["GeneratorConfig", "build_pipeline", "load_diffusion_backbone"],
        "pipeline": ["ICGPipeline", "ICGPipelineOutput"],
        "prompter": ["MetaTokenPrompter", "PrompterConfig"],
        "refiner": ["RefinerConfig", "UserRefiner"],
        "warmup": ["WarmupConfig", "WarmupTrainer"],
    },
)
