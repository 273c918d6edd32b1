"""`capsule export`: one trial's hls4ml project, config, weights and metrics, for the vendor flow.

The researcher takes the chosen design into Vivado or Vitis by hand; what they take must be the
design the capsule recorded. So the files come from the trial's folder in the run folder only
when every recorded artifact among them still hashes as recorded; otherwise (a capsule from
elsewhere, a pruned run folder) the trial is re-run as `capsule verify` does, and exported only
if it reproduces. The export folder appears whole or not at all (built beside it, then renamed);
`export.json` in it names the capsule digest, the trial, its params and metrics, and the sha256 of
every exported file.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from capsule.capsulefile import Capsule, Trial
from capsule.errors import CapsuleError, MismatchError
from capsule.files import write_atomic
from capsule.hashing import hash_files
from capsule.run import default_run_dir
from capsule.trial import BUILD_PRODUCTS, is_vendor_output
from capsule.verify import VerifyOptions, select, verify

MANIFEST = "export.json"
README = """\
# hls4ml project of trial {number}

From capsule {digest} (experiment {name}). `export.json` lists the params, the metrics with their
fidelity, and the sha256 of every file here.

- `hls4ml_prj/`: the hls4ml project as converted (compiled objects left out). Vendor flow:
  `cd hls4ml_prj && vivado_hls -f build_prj.tcl "reset=1 csim=0 synth=1 cosim=0 export=0"`
  (Vitis HLS: `vitis_hls -f build_prj.tcl ...`), or hls4ml's `hls_model.build()`.
- `hls4ml_config.yml`: the hls4ml configuration of this trial (also in `hls4ml_prj/`).
- `model.weights.h5`: the trained Keras weights.
- `metrics.json`: the trial's metrics, each with its fidelity.
"""


@dataclass(frozen=True)
class Export:
    trial: Trial
    out: Path
    source: str  # "run folder" or "re-run"
    files: dict[str, str]  # exported path -> sha256


def _intact(folder: Path, trial: Trial) -> bool:
    """Whether `folder` holds this trial's outputs exactly as the capsule recorded them."""
    from capsule.reports.canonical import canonical_sha256

    names = sorted(trial.artifacts)
    if not names or not all((folder / name).is_file() for name in names):
        return False
    plain = [n for n in names if not is_vendor_output(n)]
    got = dict(zip(plain, hash_files([folder / n for n in plain]), strict=True))
    got.update({n: canonical_sha256(folder / n) for n in names if is_vendor_output(n)})
    return got == trial.artifacts


def _layout(folder: Path) -> dict[str, Path]:
    """Exported name -> file in the trial folder."""
    chosen = {
        "hls4ml_config.yml": folder / "hls4ml_prj" / "hls4ml_config.yml",
        "model.weights.h5": folder / "train" / "model.weights.h5",
        "metrics.json": folder / "metrics.json",
        "params.json": folder / "params.json",
    }
    project = folder / "hls4ml_prj"
    for path in sorted(p for p in project.rglob("*") if p.is_file()):
        if path.suffix not in BUILD_PRODUCTS:
            chosen[f"hls4ml_prj/{path.relative_to(project).as_posix()}"] = path
    missing = [name for name, path in chosen.items() if not path.is_file()]
    if missing:
        raise CapsuleError(f"{folder}: trial folder lacks {', '.join(missing)}")
    return chosen


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
    with tempfile.TemporaryDirectory(prefix="capsule-export-") as scratch:
        source = "run folder"
        if not _intact(folder, trial):
            source = "re-run"
            rerun = dataclasses.replace(options, work_dir=Path(scratch))
            checked = verify(capsule_path, capsule, root, rerun)
            if not checked.ok:
                bad = ", ".join(c.artifact for c in checked.mismatched()[:5])
                raise MismatchError(
                    f"trial {trial.number} did not reproduce here ({bad}); not exporting a "
                    "design the capsule does not record (see `capsule verify`)"
                )
            folder = Path(scratch) / f"{trial.number:05d}"
        files = _layout(folder)
        out.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
        try:
            for name, path in files.items():
                (staging / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, staging / name)
            digests = dict(zip(files, hash_files([staging / n for n in files]), strict=True))
            spec = capsule.spec
            write_atomic(
                staging / "README.md",
                README.format(
                    number=trial.number, digest=capsule.digest, name=spec.experiment.name
                ),
            )
            manifest = {
                "capsule_digest": capsule.digest,
                "experiment": spec.experiment.name,
                "trial": trial.number,
                "status": trial.status,
                "params": trial.params,
                "metrics": {
                    k: {"value": v, "fidelity": trial.fidelity.get(k, "measured")}
                    for k, v in sorted(trial.metrics.items())
                },
                "files": dict(sorted(digests.items())),
            }
            write_atomic(staging / MANIFEST, json.dumps(manifest, indent=2) + "\n")
            if out.exists():
                out.rmdir()
            os.replace(staging, out)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    return Export(trial, out, source, dict(sorted(digests.items())))
