"""`capsule export`: one trial's hls4ml project, config, weights and metrics, for the vendor flow.

The researcher takes the chosen design into the vendor's tool by hand (the README says how, in
the tool's own words: `VendorTool.manual_build`); what they take must be the
design the capsule recorded. So the files come from the trial's folder in the run folder only
when every recorded artifact among them still hashes as recorded; otherwise (a capsule from
elsewhere, a pruned run folder) the trial is re-run as `capsule verify` does, and exported only
if it reproduces. The export folder appears whole or not at all (built beside it, then renamed);
`export.json` in it names the capsule digest, the trial, its params and metrics, and the sha256 of
every exported file.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath

from capsule import vendors
from capsule.capsulefile import Capsule, Trial
from capsule.errors import CapsuleError, MismatchError
from capsule.files import write_atomic
from capsule.hashing import canonical_json, hash_files, sha256_file
from capsule.journal import default_run_dir
from capsule.pipeline import layout
from capsule.pipeline.result import artifact_metrics, metric_values, rehash
from capsule.spec import Task
from capsule.verify import VerifyOptions, select, verify

MANIFEST = "export.json"
README = """\
# hls4ml project of trial {number}

From capsule {digest} (experiment {name}). `export.json` lists the params, the metrics with their
fidelity, and the sha256 of every file here.

- `hls4ml_prj/`: the hls4ml project files the trial recorded (compiled objects and logs left
  out; of a vendor run, its reports). Vendor flow: {manual_build}, or hls4ml's
  `hls_model.build()`.
- `hls4ml_config.yml`: the hls4ml configuration of this trial (also in `hls4ml_prj/`).
- `model.weights.h5`: the trained Keras weights; `float_predictions.npy`: the float model's
  test-split outputs (`capsule verify --from-weights` takes both to re-check the hardware flow).
- `metrics.json`: the trial's metrics, each with its fidelity.
"""


@dataclass(frozen=True)
class Export:
    trial: Trial
    out: Path
    source: str  # "run folder" or "re-run"
    files: dict[str, str]  # exported path -> sha256


EXTRAS = {  # exported name -> the recorded artifact it is, at the export folder's top
    PurePosixPath(artifact).name: artifact
    for artifact in (
        layout.HLS_CONFIG,
        *layout.WEIGHT_FILES,  # a trial has one of them
        layout.FLOAT_PREDICTIONS,  # for `verify --from-weights`
        layout.METRICS,
    )
}


def _files(trial: Trial) -> dict[str, str]:
    """Exported name -> recorded artifact: the project as recorded, and the extras."""
    extras = {n: a for n, a in EXTRAS.items() if a in trial.artifacts}
    missing = [
        a for a in EXTRAS.values() if a not in trial.artifacts and a not in layout.WEIGHT_FILES
    ]
    if not any(a in trial.artifacts for a in layout.WEIGHT_FILES):
        missing.insert(0, layout.WEIGHTS)
    if missing:
        raise CapsuleError(f"trial {trial.number} recorded no {', '.join(missing)} to export")
    project = {n: n for n in trial.artifacts if n.startswith(f"{layout.HLS_PROJECT}/")}
    return dict(sorted((project | extras).items()))


def _write(
    capsule: Capsule, trial: Trial, folder: Path, files: dict[str, str], out: Path
) -> dict[str, str]:
    """Copy into a staging folder beside `out`, check the copies, then rename it into place."""
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        for name, recorded in files.items():
            (staging / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(folder / recorded, staging / name, follow_symlinks=False)
        # The copies, not the source folder, are what must be the recorded bytes.
        copied = rehash(staging, files)
        if any(copied.get(n) != trial.artifacts[r] for n, r in files.items()):
            raise MismatchError(f"{folder}: trial files changed while they were exported")
        _check_metrics(trial, staging)
        write_atomic(staging / layout.PARAMS, canonical_json(trial.params) + b"\n")
        digests = dict(zip(files, hash_files([staging / n for n in files]), strict=True))
        digests[layout.PARAMS] = sha256_file(staging / layout.PARAMS)
        spec = capsule.spec
        readme = README.format(
            number=trial.number,
            digest=capsule.digest,
            name=spec.experiment.name,
            manual_build=vendors.builder_of(spec.toolchain.name, spec.hls4ml.backend).manual_build,
        )
        write_atomic(staging / "README.md", readme)
        manifest = {
            "capsule_digest": capsule.digest,
            "experiment": spec.experiment.name,
            "trial": trial.number,
            "status": trial.status,
            "params": trial.params,
            # What the outputs are and how the metrics scored them (capsule.tasks): a reader of
            # the project alone needs it to know a regression's outputs are values.
            "task": (spec.task or Task()).model_dump(mode="json", exclude_none=True),
            "metrics": {
                k: {"value": v, "fidelity": trial.fidelity.get(k, "measured")}
                for k, v in sorted(trial.metrics.items())
            },
            "files": dict(sorted(digests.items())),
        }
        write_atomic(staging / MANIFEST, json.dumps(manifest, indent=2) + "\n")
        umask = os.umask(0)
        os.umask(umask)
        staging.chmod(0o777 & ~umask)  # mkdtemp's 0700 would keep the export private
        for name in files:  # hls4ml runs `./build_lib.sh`; copyfile leaves it 0644
            if name.endswith(".sh"):
                (staging / name).chmod(0o777 & ~umask)
        if out.is_dir() and not out.is_symlink():
            out.rmdir()  # empty, checked before the re-run
        os.replace(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return dict(sorted(digests.items()))


def _check_metrics(trial: Trial, staging: Path) -> None:
    """MismatchError unless the recorded metrics are those of the exported `metrics.json`.

    The manifest quotes the recorded metrics; they must be the ones the hashed artifact holds,
    not numbers edited into the capsule (whose digest anyone can recompute)."""
    recorded = metric_values(trial.metrics, trial.fidelity)
    exported = artifact_metrics(staging) or {}
    for name in sorted(recorded.keys() | exported.keys()):
        if recorded.get(name) != exported.get(name):
            raise MismatchError(
                f"trial {trial.number}: metric {name} is recorded as "
                f"{recorded.get(name, 'absent')} but the exported metrics.json has "
                f"{exported.get(name, 'absent')}; not exporting results the artifacts do not back"
            )


def export_trial(
    capsule_path: Path,
    capsule: Capsule,
    root: Path,
    out: Path,
    options: VerifyOptions,
    run_dir: Path | None = None,
) -> Export:
    """Export the trial `options` selects (one `--trial` or the best) into the new folder `out`."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise CapsuleError(f"{out}: export folder exists and is not empty")
    chosen, _ = select(capsule, options)
    if len(chosen) != 1:
        raise CapsuleError("export takes one trial: --trial N or --best")
    trial = chosen[0]
    folder = (run_dir or default_run_dir(capsule_path)) / "trials" / f"{trial.number:05d}"
    files = _files(trial)
    with tempfile.TemporaryDirectory(prefix="capsule-export-", ignore_cleanup_errors=True) as tmp:
        source = "run folder"
        if rehash(folder, trial.artifacts) != trial.artifacts:
            source = "re-run"
            checked = verify(capsule_path, capsule, root, replace(options, work_dir=Path(tmp)))
            if not checked.ok:
                bad = ", ".join(c.artifact for c in checked.mismatched()[:5])
                raise MismatchError(
                    f"trial {trial.number} did not reproduce here ({bad}); not exporting a "
                    "design the capsule does not record (see `capsule verify`)"
                )
            folder = Path(tmp) / f"{trial.number:05d}"
        try:
            digests = _write(capsule, trial, folder, files, out)
        except OSError as exc:
            raise CapsuleError(f"{out}: cannot export: {exc.strerror or exc}") from None
    return Export(trial, out, source, digests)
