import pytest
import torch

from icg_rec.device import DeviceError, autocast, resolve_device, resolve_dtype

no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="this host has CUDA")


def test_cpu_resolves_and_is_the_default_everywhere():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")


@no_cuda
def test_cuda_on_a_host_without_it_is_refused_by_name():
    with pytest.raises(DeviceError, match=r"device 'cuda:1' was asked for, but CUDA is not available"):
        resolve_device("cuda:1")


@pytest.mark.parametrize("bad", ["tpu", "gpu", "meta"])
def test_unknown_devices_are_refused(bad):
    with pytest.raises(DeviceError, match=rf"device must be 'cpu', 'cuda' or 'cuda:N', got '{bad}'"):
        resolve_device(bad)


def test_dtypes_resolve_by_name_or_torch_dtype():
    cpu = torch.device("cpu")
    assert resolve_dtype("float32", cpu) is torch.float32
    assert resolve_dtype(torch.bfloat16, cpu, training=True) is torch.bfloat16
    assert resolve_dtype("float16", torch.device("cuda")) is torch.float16
    with pytest.raises(
        DeviceError, match=r"dtype must be one of \['bfloat16', 'float16', 'float32'\], got 'fp8'"
    ):
        resolve_dtype("fp8", cpu)


def test_float16_needs_cuda_and_is_refused_for_training():
    with pytest.raises(DeviceError, match="'float16' needs a CUDA device"):
        resolve_dtype("float16", torch.device("cpu"))
    with pytest.raises(DeviceError, match="float16 training needs loss scaling"):
        resolve_dtype("float16", torch.device("cuda"), training=True)


def test_autocast_is_off_for_float32_and_on_for_bfloat16():
    cpu = torch.device("cpu")
    a, b = torch.randn(4, 4), torch.randn(4, 4)
    with autocast(cpu, torch.float32):
        assert (a @ b).dtype == torch.float32
    with autocast(cpu, torch.bfloat16):
        assert (a @ b).dtype == torch.bfloat16
