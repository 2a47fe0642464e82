"""Base class for the pipeline's own torch modules: diffusers reads `.device` / `.dtype` off every component."""

import torch
from torch import nn


class PipelineModule(nn.Module):
    """An nn.Module that reports the device and dtype of its first parameter, as diffusers models do."""

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype
