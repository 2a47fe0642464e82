"""Base class for the pipeline's own torch modules: device/dtype as diffusers expects, config + weights on disk."""

from dataclasses import asdict
from pathlib import Path
from typing import Any, ClassVar, Self

import torch
from torch import nn

from icg_rec.io import config_from_dict, load_state_into, load_weights, read_json, save_weights, write_json


class PipelineModule(nn.Module):
    """An nn.Module built from one dataclass config and saved as `<name>_config.json` + `<name>.safetensors`.

    Subclasses set `config_class` and `file_stem` and keep their config in `self.config`.
    """

    config_class: ClassVar[type]  # the dataclass the module is built from
    file_stem: ClassVar[str]  # e.g. "adapter" -> adapter_config.json, adapter.safetensors
    config: Any

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    def save_pretrained(self, folder: str | Path) -> Path:
        """Writes the config as JSON and the weights as safetensors into `folder`."""
        folder = Path(folder)
        write_json(folder / f"{self.file_stem}_config.json", asdict(self.config))
        save_weights(folder / f"{self.file_stem}.safetensors", self.state_dict())
        return folder

    @classmethod
    def from_pretrained(cls, folder: str | Path) -> Self:
        """Loads what `save_pretrained` wrote, raising CheckpointError on missing or mismatched files."""
        folder = Path(folder)
        config_path = folder / f"{cls.file_stem}_config.json"
        module = cls(config_from_dict(cls.config_class, read_json(config_path), source=str(config_path)))
        weights = folder / f"{cls.file_stem}.safetensors"
        load_state_into(module, load_weights(weights), f"{weights} (config {config_path})")
        return module
