"""Base class for the pipeline's own torch modules: device/dtype as diffusers expects, config + weights on disk."""

from dataclasses import asdict
from pathlib import Path
from typing import Any, ClassVar, Self

import torch
from diffusers import ModelMixin

from icg_rec.errors import CheckpointError
from icg_rec.io import config_from_dict, load_state_into, load_weights, read_json, save_weights, write_json


def require_files(folder: Path, names: list[str], what: str) -> None:
    """Raises CheckpointError naming the first of `names` missing from `folder`, before anything is built."""
    for name in names:
        if not (folder / name).is_file():
            raise CheckpointError(f"{what} at {folder} is incomplete: {name} is missing")


class PipelineModule(ModelMixin):
    """An nn.Module built from one dataclass config and saved as `<name>_config.json` + `<name>.safetensors`.

    Subclasses set `config_class` and `file_stem` and keep their config in `self.config`. Being a diffusers
    `ModelMixin`, it is a component `DiffusionPipeline.save_pretrained` / `from_pretrained` save and load
    through its own `save_pretrained` / `from_pretrained` (diffusers' extra keyword arguments are accepted;
    `torch_dtype` is applied, the rest concern sharded or remote weights and do not apply here).
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
        folder.mkdir(parents=True, exist_ok=True)
        write_json(folder / f"{self.file_stem}_config.json", asdict(self.config))
        save_weights(folder / f"{self.file_stem}.safetensors", self.state_dict())
        return folder

    @classmethod
    def from_pretrained(cls, folder: str | Path, torch_dtype: torch.dtype | None = None, **_: Any) -> Self:
        """Loads what `save_pretrained` wrote, raising CheckpointError on missing or mismatched files."""
        folder = Path(folder)
        config_path = folder / f"{cls.file_stem}_config.json"
        weights = folder / f"{cls.file_stem}.safetensors"
        require_files(folder, [config_path.name, weights.name], cls.__name__)
        module = cls(config_from_dict(cls.config_class, read_json(config_path), source=str(config_path)))
        load_state_into(module, load_weights(weights), f"{weights} (config {config_path})")
        return module if torch_dtype is None else module.to(dtype=torch_dtype)
