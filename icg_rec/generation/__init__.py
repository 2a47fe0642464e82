"""icg_rec.generation: the ICG cover generator (meta-token prompter, user refiner, adapter, diffusers pipeline).

Heavy (torch / diffusers / transformers); import the submodules you need, or these names.
"""

from icg_rec.generation.adapter import AdapterConfig, CoverAdapter, prompt_embeds
from icg_rec.generation.backbones import GeneratorConfig, build_pipeline, load_diffusion_backbone
from icg_rec.generation.pipeline import ICGPipeline, ICGPipelineOutput
from icg_rec.generation.prompter import MetaTokenPrompter, PrompterConfig
from icg_rec.generation.refiner import RefinerConfig, UserRefiner
from icg_rec.generation.warmup import WarmupConfig, WarmupTrainer

__all__ = [
    "AdapterConfig",
    "CoverAdapter",
    "GeneratorConfig",
    "ICGPipeline",
    "ICGPipelineOutput",
    "MetaTokenPrompter",
    "PrompterConfig",
    "RefinerConfig",
    "UserRefiner",
    "WarmupConfig",
    "WarmupTrainer",
    "build_pipeline",
    "load_diffusion_backbone",
    "prompt_embeds",
]
