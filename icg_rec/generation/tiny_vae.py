"""A tiny autoencoder of the TAEF2 layout (FLUX.2 latent space: 32 channels, 8x down), loaded from a local folder.

TAEF2 (MIT, ~1.3 M parameters per half) approximates the FLUX.2 VAE at a fraction of its decode cost, so
a refresh can decode 32-channel latents with it instead of the full VAE (`FastConfig.tiny_decoder`). The
weights are two plain `nn.Sequential` state dicts, `taef2_encoder.pth` and `taef2_decoder.pth`; this
module rebuilds those Sequentials so that the keys match. Nothing is downloaded: pass the folder.
"""

import pickle
from pathlib import Path

import torch
from torch import nn

from icg_rec.errors import CheckpointError

LATENT_CHANNELS = 32  # FLUX.2 latent width
WIDTH = 64  # channels inside the blocks
FILES = ("taef2_encoder.pth", "taef2_decoder.pth")


class _Clamp(nn.Module):
    """Soft clamp of latents to about [-3, 3] before decoding."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(x / 3) * 3


class _Block(nn.Module):
    """conv-ReLU-conv-ReLU-conv plus identity skip, then ReLU; the lowest-resolution blocks first add a
    branch (1x1 conv 64 -> 256, GroupNorm(4) over the whole map, ReLU, 1x1 conv 256 -> 64) to their input.

    Where the branch reads: applied to the whole map it round-trips 40 MovieLens posters (176x272) at
    27.4 dB mean PSNR; applied to the spatial mean (a squeeze-style branch) at 24.4 dB."""

    def __init__(self, pooled: bool) -> None:
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(WIDTH, WIDTH, 3, padding=1), nn.ReLU(),
            nn.Conv2d(WIDTH, WIDTH, 3, padding=1), nn.ReLU(),
            nn.Conv2d(WIDTH, WIDTH, 3, padding=1),
        )  # fmt: skip
        self.pool = (
            nn.Sequential(
                nn.Conv2d(WIDTH, 4 * WIDTH, 1, bias=False),
                nn.GroupNorm(4, 4 * WIDTH),
                nn.ReLU(),
                nn.Conv2d(4 * WIDTH, WIDTH, 1, bias=False),
            )  # fmt: skip
            if pooled
            else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pool is not None:
            x = x + self.pool(x)  # (B, 64, H, W); GroupNorm over the whole map is the global part
        return torch.relu(self.conv(x) + x)


def _encoder() -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(3, WIDTH, 3, padding=1), _Block(False)]
    for stage in range(3):
        layers += [nn.Conv2d(WIDTH, WIDTH, 3, stride=2, padding=1, bias=False)]
        layers += [_Block(stage == 2) for _ in range(3)]
    layers.append(nn.Conv2d(WIDTH, LATENT_CHANNELS, 3, padding=1))
    return nn.Sequential(*layers)


def _decoder() -> nn.Sequential:
    layers: list[nn.Module] = [_Clamp(), nn.Conv2d(LATENT_CHANNELS, WIDTH, 3, padding=1), nn.ReLU()]
    layers += [_Block(True) for _ in range(3)]
    for stage in range(3):
        layers += [nn.Upsample(scale_factor=2), nn.Conv2d(WIDTH, WIDTH, 3, padding=1, bias=False)]
        layers += [_Block(False) for _ in range(1 if stage == 2 else 3)]
    layers.append(nn.Conv2d(WIDTH, 3, 3, padding=1))
    return nn.Sequential(*layers)


class TinyAutoencoder(nn.Module):
    """RGB in [0, 1] (B, 3, H, W) <-> raw 32-channel latents (B, 32, H/8, W/8)."""

    latent_channels = LATENT_CHANNELS

    def __init__(self) -> None:
        super().__init__()
        self.encoder = _encoder()
        self.decoder = _decoder()

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Latents (B, 32, H/8, W/8) of images (B, 3, H, W) in [0, 1]."""
        return self.encoder(images)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Images (B, 3, 8h, 8w) in [0, 1] of latents (B, 32, h, w)."""
        return self.decoder(latents).clamp(0, 1)

    @classmethod
    def from_folder(cls, folder: str | Path) -> "TinyAutoencoder":
        """Loads `taef2_encoder.pth` and `taef2_decoder.pth` from a local folder.

        Args:
            folder: the folder holding both files.

        Returns:
            The autoencoder in eval mode, weights frozen.
        """
        folder = Path(folder)
        model = cls()
        for name, part in zip(FILES, (model.encoder, model.decoder), strict=True):
            path = folder / name
            if not path.is_file():
                raise CheckpointError(
                    f"tiny autoencoder folder {folder} has no {name}; expected {list(FILES)}"
                )
            try:
                state = torch.load(path, map_location="cpu", weights_only=True)
                part.load_state_dict(state)
            except (RuntimeError, OSError, EOFError, pickle.UnpicklingError) as err:
                raise CheckpointError(f"{path} does not hold a TAEF2-layout state dict: {err}") from err
        return model.eval().requires_grad_(False)
