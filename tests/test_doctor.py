"""`icg-rec doctor` and the ImportError of the TorchRec modules: what they say for each broken stack."""

import importlib
import sys

import pytest
import torch

from icg_rec import cli, doctor


def _stack(monkeypatch, cuda: str | None, torch_version: str, **installed: str) -> dict[str, doctor.Finding]:
    """check_stack() on a faked set of installed distributions, by component name."""
    versions = {"torch": torch_version, **{name.replace("_", "-"): v for name, v in installed.items()}}
    monkeypatch.setattr(doctor, "_installed", versions.get)
    monkeypatch.setattr(doctor, "_try_import", lambda module: None)
    monkeypatch.setattr(doctor, "_check_requirements", lambda: [])
    monkeypatch.setattr(torch.version, "cuda", cuda)
    return {finding.what: finding for finding in doctor.check_stack()}


def test_both_fbgemm_builds_fail_with_the_uninstall_and_the_cpu_install(monkeypatch):
    found = _stack(
        monkeypatch, None, "2.13.0+cpu", fbgemm_gpu="1.8.0", fbgemm_gpu_cpu="1.8.0", torchrec="1.8.0"
    )
    assert found["fbgemm"].status == "fail"
    assert found["fbgemm"].fix == (
        "pip uninstall -y fbgemm-gpu fbgemm-gpu-cpu torchrec && pip install 'fbgemm-gpu-cpu==1.8.*' "
        "'torchmetrics==1.0.3' tensordict pyre-extensions && pip install --no-deps 'torchrec==1.8.*'"
    )


def test_cuda_fbgemm_under_cpu_torch_fails(monkeypatch):
    found = _stack(monkeypatch, None, "2.13.0+cpu", fbgemm_gpu="1.8.0")
    assert found["fbgemm"].status == "fail"
    assert "CUDA build" in found["fbgemm"].detail


def test_fbgemm_for_another_torch_minor_fails(monkeypatch):
    found = _stack(monkeypatch, "12.8", "2.14.0", fbgemm_gpu="1.8.0", torchrec="1.8.0")
    assert found["fbgemm"].status == "fail"
    assert "built for torch 2.13" in found["fbgemm"].detail
    assert found["fbgemm"].fix.endswith("pip install 'fbgemm-gpu==1.9.*' 'torchrec==1.9.*'")


def test_missing_torchrec_is_a_warning_with_the_command(monkeypatch):
    found = _stack(monkeypatch, None, "2.13.0+cpu")
    assert found["torchrec"].status == "warn"
    assert found["torchrec"].fix.endswith("pip install --no-deps 'torchrec==1.8.*'")


def test_cpu_stack_is_ok_and_explains_pip_check(monkeypatch):
    found = _stack(
        monkeypatch, None, "2.13.0+cpu", fbgemm_gpu_cpu="1.8.0", torchrec="1.8.0", faiss_cpu="1.15.1"
    )
    assert {f.status for f in found.values()} == {"ok"}
    assert "pip check" in found["torchrec"].detail


def test_both_faiss_builds_fail(monkeypatch):
    found = _stack(monkeypatch, None, "2.13.0+cpu", faiss_cpu="1.15.1", faiss_gpu="1.15.1")
    assert found["faiss"].status == "fail"


def test_unknown_torch_minor_installs_a_known_pair():
    assert doctor.torchrec_install_command(True, "2.20.0").startswith("pip install 'torch==2.14.*' && ")


def test_doctor_command_exits_1_on_a_failure(monkeypatch, capsys):
    monkeypatch.setattr(doctor, "check_stack", lambda: [doctor.Finding("fail", "faiss", "both", "pip fix")])
    assert cli.main(["doctor"]) == 1
    assert capsys.readouterr().out.splitlines()[-1] == "  pip fix"


def test_version_flag(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.strip() == f"icg-rec {importlib.import_module('icg_rec').__version__}"


@pytest.mark.parametrize("module", ["icg_rec.ranking.dlrm", "icg_rec.features.provider"])
def test_torchrec_modules_say_what_to_install_when_torchrec_is_missing(monkeypatch, module):
    for name in list(sys.modules):
        if name == module or name.startswith("torchrec"):
            monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "torchrec", None)  # "import torchrec" now raises ImportError
    with pytest.raises(
        ImportError, match=r"needs TorchRec and FBGEMM.*pip install --no-deps 'torchrec==1\.8\.\*'"
    ):
        importlib.import_module(module)
