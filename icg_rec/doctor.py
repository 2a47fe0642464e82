"""`icg-rec doctor`: checks the installed stack and says exactly what to install.

The one stack question pip cannot answer for icg_rec is TorchRec's: torchrec's metadata requires the
CUDA `fbgemm-gpu`, while a CPU host needs `fbgemm-gpu-cpu` (the same `fbgemm_gpu` module, so the two
builds must never be installed together), and each FBGEMM release is built for one torch minor.
Importing this module imports no heavy package; `check_stack` imports torch, and FBGEMM/TorchRec only
where their distributions are installed.
"""

import importlib
import importlib.metadata as metadata
import platform
from dataclasses import dataclass

# FBGEMM (major, minor) -> the torch (major, minor) it is built for; from FBGEMM's release notes.
FBGEMM_FOR_TORCH = {(1, 8): (2, 13), (1, 9): (2, 14)}
# The torchrec release that goes with each FBGEMM release.
TORCHREC_FOR_FBGEMM = {(1, 8): (1, 8), (1, 9): (1, 9)}


@dataclass(frozen=True)
class Finding:
    status: str  # "ok", "warn" or "fail"
    what: str  # the component checked, e.g. "fbgemm"
    detail: str  # what was found, in one line
    fix: str = ""  # the command(s) that fix it; "" when nothing is to do


def _installed(distribution: str) -> str | None:
    """Version of an installed distribution, or None."""
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def _minor(version: str) -> tuple[int, int]:
    from packaging.version import Version

    release = Version(version).release
    return release[0], release[1] if len(release) > 1 else 0


def torchrec_install_command(cuda: bool, torch_version: str | None) -> str:
    """The pip command(s) that install TorchRec + FBGEMM matching this host's torch.

    Args:
        cuda: whether torch is a CUDA build.
        torch_version: installed torch version ("2.13.0+cpu"), or None when torch is missing.

    Returns:
        One shell line; versions are pinned to the minor that matches torch where it is known.
    """
    pairs = {torch_minor: fbgemm for fbgemm, torch_minor in FBGEMM_FOR_TORCH.items()}
    fbgemm = pairs.get(_minor(torch_version)) if torch_version else None
    if fbgemm is None:
        fbgemm = max(FBGEMM_FOR_TORCH)
        prefix = f"pip install 'torch=={'.'.join(map(str, FBGEMM_FOR_TORCH[fbgemm]))}.*' && "
    else:
        prefix = ""
    fb = ".".join(map(str, fbgemm))
    tr = ".".join(map(str, TORCHREC_FOR_FBGEMM[fbgemm]))
    if cuda:
        return prefix + f"pip install 'fbgemm-gpu=={fb}.*' 'torchrec=={tr}.*'"
    return (
        prefix
        + f"pip install 'fbgemm-gpu-cpu=={fb}.*' 'torchmetrics==1.0.3' tensordict pyre-extensions"
        + f" && pip install --no-deps 'torchrec=={tr}.*'"
    )


def missing_torchrec_message(error: BaseException) -> str:
    """The ImportError text for a module that needs TorchRec: what failed and the command that fixes it."""
    import torch

    return (
        f"this part of icg_rec needs TorchRec and FBGEMM, and importing them failed ({error}). "
        f"Install them with: {torchrec_install_command(torch.version.cuda is not None, torch.__version__)}  "
        "(`icg-rec doctor` checks the whole stack)"
    )


def _check_requirements() -> list[Finding]:
    """icg_rec's declared core requirements against what is installed (skipped when run from source)."""
    from packaging.requirements import Requirement

    try:
        requires = metadata.requires("icg_rec") or []
    except metadata.PackageNotFoundError:
        return [Finding("warn", "icg_rec", "not installed (run from a source tree): ranges not checked")]
    core = [Requirement(line) for line in requires]
    core = [r for r in core if r.marker is None or r.marker.evaluate({"extra": ""})]  # extras: rows below
    findings = []
    for requirement in core:
        version = _installed(requirement.name)
        if version is None:
            findings.append(
                Finding("fail", requirement.name, "not installed", f"pip install '{requirement}'")
            )
        elif not requirement.specifier.contains(version, prereleases=True):
            findings.append(
                Finding(
                    "fail",
                    requirement.name,
                    f"{version} is outside {requirement.specifier}",
                    f"pip install '{requirement}'",
                )
            )
    if not findings:
        findings.append(Finding("ok", "requirements", f"{len(core)} core requirements, all within range"))
    return findings


def _try_import(module: str) -> str | None:
    """None when `module` imports, else the error in one line."""
    try:
        importlib.import_module(module)
    except Exception as error:  # a mixed FBGEMM fails with OSError/RuntimeError, not only ImportError
        return f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
    return None


def check_stack() -> list[Finding]:
    """Checks Python, the core requirements, torch, FBGEMM, TorchRec and faiss.

    Returns:
        One `Finding` per check, in the order printed by `icg-rec doctor`.
    """
    findings = [Finding("ok", "python", platform.python_version())]
    findings += _check_requirements()
    torch_version = _installed("torch")
    if torch_version is None:
        findings.append(Finding("fail", "torch", "not installed", "pip install 'torch>=2.13'"))
        return findings
    import torch

    cuda = torch.version.cuda is not None
    build = f"CUDA {torch.version.cuda}" if cuda else "CPU"
    devices = f", {torch.cuda.device_count()} GPU(s) visible" if cuda else ""
    findings.append(Finding("ok", "torch", f"{torch_version} ({build} build{devices})"))

    fbgemm_gpu, fbgemm_cpu = _installed("fbgemm-gpu"), _installed("fbgemm-gpu-cpu")
    torchrec = _installed("torchrec")
    install = torchrec_install_command(cuda, torch_version)
    if fbgemm_gpu and fbgemm_cpu:
        findings.append(
            Finding(
                "fail",
                "fbgemm",
                f"fbgemm-gpu {fbgemm_gpu} and fbgemm-gpu-cpu {fbgemm_cpu} are both installed: "
                "they overwrite one `fbgemm_gpu` module",
                "pip uninstall -y fbgemm-gpu fbgemm-gpu-cpu torchrec && " + install,
            )
        )
    elif fbgemm_gpu and not cuda:
        findings.append(
            Finding(
                "fail",
                "fbgemm",
                f"fbgemm-gpu {fbgemm_gpu} is the CUDA build, torch is the CPU build",
                "pip uninstall -y fbgemm-gpu torchrec && " + install,
            )
        )
    elif fbgemm_gpu or fbgemm_cpu:
        name, version = ("fbgemm-gpu", fbgemm_gpu) if fbgemm_gpu else ("fbgemm-gpu-cpu", fbgemm_cpu)
        wanted = FBGEMM_FOR_TORCH.get(_minor(version))
        if wanted is not None and wanted != _minor(torch_version):
            findings.append(
                Finding(
                    "fail",
                    "fbgemm",
                    f"{name} {version} is built for torch {wanted[0]}.{wanted[1]}, torch is {torch_version}",
                    f"pip uninstall -y {name} torchrec && " + install,
                )
            )
        elif fbgemm_cpu and cuda:
            findings.append(
                Finding("warn", "fbgemm", f"{name} {version}: CPU kernels under a CUDA torch", install)
            )
        else:
            error = _try_import("fbgemm_gpu")
            status = "fail" if error else "ok"
            findings.append(
                Finding(
                    status,
                    "fbgemm",
                    f"{name} {version}" + (f": import failed ({error})" if error else ""),
                    install if error else "",
                )
            )
    else:
        findings.append(
            Finding("warn", "fbgemm", "not installed (needed by TorchRecRanker, FeatureProvider)", install)
        )

    if torchrec is None:
        findings.append(
            Finding("warn", "torchrec", "not installed (needed by TorchRecRanker, FeatureProvider)", install)
        )
    else:
        error = _try_import("torchrec")
        if error:
            findings.append(Finding("fail", "torchrec", f"{torchrec}: import failed ({error})", install))
        elif fbgemm_cpu and not fbgemm_gpu:
            findings.append(
                Finding(
                    "ok",
                    "torchrec",
                    f"{torchrec} with fbgemm-gpu-cpu (`pip check` reports 'torchrec requires fbgemm-gpu': "
                    "expected, torchrec's metadata names only the CUDA build)",
                )
            )
        else:
            findings.append(Finding("ok", "torchrec", torchrec))

    faiss = [name for name in ("faiss-cpu", "faiss-gpu") if _installed(name)]
    if len(faiss) > 1:
        findings.append(
            Finding(
                "fail",
                "faiss",
                "faiss-cpu and faiss-gpu are both installed: they overwrite one module",
                "pip uninstall -y faiss-gpu faiss-cpu && pip install faiss-cpu",
            )
        )
    elif faiss:
        findings.append(Finding("ok", "faiss", f"{faiss[0]} {_installed(faiss[0])}"))
    return findings


def format_findings(findings: list[Finding]) -> str:
    """The report `icg-rec doctor` prints: one line per check, then the commands to run, if any."""
    lines = [f"{f.status:<4} {f.what:<14} {f.detail}" for f in findings]
    fixes = list(dict.fromkeys(f.fix for f in findings if f.fix and f.status != "ok"))
    if fixes:
        lines += ["", "To fix, run:"] + [f"  {fix}" for fix in fixes]
    return "\n".join(lines)


def register(subparsers) -> None:
    """Adds `icg-rec doctor` to the command's subparsers."""
    doctor = subparsers.add_parser(
        "doctor",
        help="check the installed stack (torch, FBGEMM, TorchRec, faiss) and print what to install",
        description=__doc__.splitlines()[0],
    )

    def run(args) -> int:
        findings = check_stack()
        print(format_findings(findings))
        return 1 if any(f.status == "fail" for f in findings) else 0

    doctor.set_defaults(run=run)
