"""Typed, resumable stages that are skipped when up to date, like make.

A stage is a dataclass config, a function `body(config, *inputs, folder) -> output` and a folder. When it
finishes, `run_stage` writes `folder/stage.json`:

    {"name", "config_hash", "config", "inputs": {input name: digest}, "versions": {package: version},
     "seconds", "outputs": {relative path: sha256}, "digest"}

`digest` is the sha256 of the sorted outputs; a downstream stage records it as its input. A rerun is
"up to date" (the body is not called) when stage.json exists, the config hash and the input digests are
the same, and every output file still hashes to its record. Otherwise stage.json is deleted first (a
half-rewritten folder never looks finished) and the body runs: it "resumes" in a folder whose
`.started.json` names the same config and inputs (the body continues from its own checkpoints there),
and runs afresh ("ran") in an emptied folder otherwise.
"""

import hashlib
import json
import platform
import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, is_dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

from icg_rec.errors import CheckpointError
from icg_rec.io import file_sha256, hash_files, read_json, write_json

STAGE_FILE = "stage.json"  # written last, atomically: the stage finished
STARTED_FILE = ".started.json"  # config hash + input digests of an unfinished run in this folder
UP_TO_DATE, RAN, RESUMED = "up to date", "ran", "resumed"  # the statuses of run_stage
VERSIONED = ("icg_rec", "torch", "diffusers", "transformers", "polars", "numpy")  # recorded, not compared


class StageInput(Protocol):
    """What a stage reads: an upstream StageOutput, or external inputs hashed by content."""

    @property
    def digest(self) -> str: ...


@dataclass(frozen=True)
class StageOutput:
    """Base of every stage's typed output: its folder, and verified access to the files in it.

    Subclasses add loaders (e.g. `Prepared.train()`) built on `path`, so that nothing is read from a
    stage folder without checking it against the stage's record. A subclass must be constructible from
    the folder alone: an up-to-date stage is returned as `Output(folder)`.
    """

    folder: Path  # the stage's folder, holding stage.json

    def record(self) -> dict[str, Any]:
        """The stage's stage.json.

        Raises:
            CheckpointError: the stage has not finished (no stage.json) or its record is unreadable.
        """
        path = Path(self.folder) / STAGE_FILE
        if not path.is_file():
            raise CheckpointError(
                f"stage folder {self.folder} has no {STAGE_FILE}: the stage has not finished"
            )
        return read_json(path)

    @property
    def digest(self) -> str:
        """The sha256 of the stage's outputs, as recorded in stage.json."""
        return self.record()["digest"]

    def path(self, relative: str) -> Path:
        """The path of an output file, or of a folder of them, after checking every file against stage.json.

        Args:
            relative: POSIX path relative to the stage folder (a file, or a folder: all files under it).

        Returns:
            The absolute path.

        Raises:
            CheckpointError: the path is not among the recorded outputs, or a file under it is missing
                or no longer hashes to its record.
        """
        outputs = self.record()["outputs"]
        prefix = relative.rstrip("/") + "/"
        names = [name for name in outputs if name == relative or name.startswith(prefix)]
        if not names:
            raise CheckpointError(
                f"stage {self.folder} recorded no output {relative!r}; outputs: {sorted(outputs)}"
            )
        for name in names:
            file = Path(self.folder) / name
            if not file.is_file():
                raise CheckpointError(f"stage {self.folder}: output {name!r} is missing")
            if file_sha256(file) != outputs[name]:
                raise CheckpointError(
                    f"stage {self.folder}: output {name!r} does not match its sha256 in {STAGE_FILE}"
                )
        return Path(self.folder) / relative

    def read_json(self, relative: str) -> Any:
        """A JSON output, verified."""
        return read_json(self.path(relative))


OutputT = TypeVar("OutputT", bound=StageOutput)


@dataclass(frozen=True)
class StageResult(Generic[OutputT]):
    """What `run_stage` returns."""

    output: OutputT  # the stage's typed output
    status: str  # UP_TO_DATE, RAN or RESUMED
    seconds: float  # wall time of this call (the check alone when up to date)


def config_hash(config: Any) -> str:
    """sha256 of a dataclass config's fields as canonical JSON (sorted keys; paths and tuples as text/lists)."""
    return hashlib.sha256(_canonical(_as_dict(config)).encode()).hexdigest()


def run_stage(
    name: str,
    body: Callable[..., OutputT],
    config: Any,
    inputs: Mapping[str, StageInput],
    folder: str | Path,
    output: type[OutputT],
) -> StageResult[OutputT]:
    """Runs `body(config, *inputs.values(), folder)` unless the stage's folder is up to date.

    Args:
        name: the stage's name (recorded, and used in messages).
        body: the stage function; it writes its files into `folder` and returns an `output` instance.
            It may keep checkpoints in `folder` and continue from them when it finds them there.
        config: the stage's dataclass config.
        inputs: input name -> upstream output (or external inputs) with a `digest`, in the order the
            body takes them.
        folder: the stage's folder (created).
        output: the stage's StageOutput subclass.

    Returns:
        The typed output, the status (UP_TO_DATE, RAN or RESUMED) and the seconds this call took.

    Raises:
        CheckpointError: the body returned something other than an `output` for `folder`.
    """
    start = time.perf_counter()
    folder = Path(folder)
    digests = {key: value.digest for key, value in inputs.items()}
    started = {"name": name, "config_hash": config_hash(config), "inputs": digests}
    if _up_to_date(folder, started):
        return StageResult(output(folder), UP_TO_DATE, time.perf_counter() - start)
    (folder / STAGE_FILE).unlink(missing_ok=True)
    status = RESUMED if _same_start(folder, started) else RAN
    if status == RAN:
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        write_json(folder / STARTED_FILE, started)
    result = body(config, *inputs.values(), folder)
    if not isinstance(result, output) or Path(result.folder) != folder:
        raise CheckpointError(
            f"stage {name} returned {result!r}; expected a {output.__name__} of the folder {folder}"
        )
    outputs = hash_files(folder, exclude=[STAGE_FILE, STARTED_FILE])
    seconds = time.perf_counter() - start
    write_json(
        folder / STAGE_FILE,
        {
            **started,
            "config": _as_dict(config),
            "versions": versions(),
            "seconds": round(seconds, 3),
            "outputs": outputs,
            "digest": hashlib.sha256(_canonical(outputs).encode()).hexdigest(),
        },
    )
    # A body that saves its artifact into the stage folder itself through write_folder (cohorts, the A/B
    # plan) replaces the folder, this marker included.
    (folder / STARTED_FILE).unlink(missing_ok=True)
    return StageResult(result, status, seconds)


def versions() -> dict[str, str | None]:
    """Python's and the main packages' versions (None where a package is not installed)."""
    found: dict[str, str | None] = {"python": platform.python_version()}
    for package in VERSIONED:
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = None
    return found


def _up_to_date(folder: Path, started: dict[str, Any]) -> bool:
    path = folder / STAGE_FILE
    if not path.is_file():
        return False
    try:
        record = json.loads(path.read_text())
        if any(record.get(key) != value for key, value in started.items()):
            return False
        outputs = record["outputs"]
        return all(
            (folder / rel).is_file() and file_sha256(folder / rel) == sha for rel, sha in outputs.items()
        )
    except (json.JSONDecodeError, KeyError, TypeError, AttributeError):
        return False  # an unreadable record is an unfinished stage


def _same_start(folder: Path, started: dict[str, Any]) -> bool:
    try:
        return json.loads((folder / STARTED_FILE).read_text()) == started
    except (OSError, json.JSONDecodeError):
        return False


def _as_dict(config: Any) -> dict[str, Any]:
    if not is_dataclass(config) or isinstance(config, type):
        raise TypeError(f"a stage config must be a dataclass instance, got {type(config).__name__}")
    return json.loads(_canonical(asdict(config)))


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str, separators=(",", ":"))
