#!/usr/bin/env python3
"""TEST DOUBLE of the vendor HLS tools (vivado_hls, vitis-run, vitis_hls, icpx): NOT a real tool.

Nobody can install Vivado here, so tests install this script as `<install>/bin/vivado_hls` (or
`bin/vitis-run` and `bin/vitis_hls`) in a temporary install folder, next to a `double.json` that
tells it how to behave. It acts like the real tool at the process level only:

- `-version` prints the real tool's version banner;
- `vivado_hls -f build_prj.tcl "reset=0 csim=0 synth=1 ... vsynth=0"` and
  `vitis-run --tcl build_prj.tcl --mode hls` (options in build_opt.tcl) check the hls4ml project
  in the working directory and copy REAL report files written by the real tools (from
  tests/data/vendor-reports, copied into the install folder by the test fixture) to where the
  real tool writes them: `<top>_prj/solution1/syn/report/<top>_csynth.xml` (+ `csynth.xml` for
  Vitis), and `vivado_synth.rpt` in the project folder for logic synthesis;
- as oneAPI's `icpx`, run by hls4ml's CMake project (`cmake ..`, `make report|fpga` in build/):
  without `-fsycl` it is the host C++ compiler and hands its arguments to g++ unchanged (CMake's
  compiler checks); with `-fsycl -c` it writes an empty object; the FPGA link (`-Xshardware
  ... -o NAME`) writes the REAL oneAPI report JSON (tests/data/vendor-reports/
  hls4ml-fixture-oneapi) to `NAME.prj/reports/resources/json/` as the compiler does, without
  `quartus.ndjson` for the early `report` link (`-fsycl-link=early`);
- `double.json` "mode": "ok", "fail" (licence error, exit 1), "hang" (starts a child and sleeps
  forever, to test that the whole process tree is killed), "no-reports" (exit 0, writes nothing);
  "delay_s" sleeps before writing the reports (synthesis time).
Every call is appended to `calls.jsonl` in the install folder.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

INSTALL = Path(__file__).resolve().parent.parent
TOOL = Path(sys.argv[0]).name
CONFIG = json.loads((INSTALL / "double.json").read_text())
BANNERS = {
    "vivado_hls": "Vivado HLS 2020.1 (64-bit)\nSW Build 2902540 on Wed May 27 19:54:35 MDT 2020",
    "vitis_hls": "Vitis HLS - High-Level Synthesis from C, C++ and OpenCL v2022.2 (64-bit)\n"
    "SW Build 3670227 on Oct 13 2022",
    "icpx": "Intel(R) oneAPI DPC++/C++ Compiler 2025.0.4 (2025.0.4.20241205)\n"
    "Target: x86_64-unknown-linux-gnu",
}
ONEAPI_JSON = "reports/resources/json"


def log(line: str) -> None:
    print(line, flush=True)


def options() -> dict[str, int]:
    if TOOL == "vivado_hls":
        words = " ".join(sys.argv[3:]) if sys.argv[1:3] == ["-f", "build_prj.tcl"] else ""
        return {k: int(v in ("1", "True")) for k, v in re.findall(r"(\w+)=(\w+)", words)}
    text = Path("build_opt.tcl").read_text()
    return {k: int(v) for k, v in re.findall(r"^\s*(\w+)\s+(\d)\s*$", text, re.MULTILINE)}


def misbehave() -> int | None:
    """What "mode" asks for instead of a build: an exit code, a hang, or None to go on."""
    mode = CONFIG.get("mode", "ok")
    if mode == "fail":
        log("ERROR: [Common 17-345] A valid license was not found for feature 'HLS'.")
        return 1
    if mode == "hang":
        subprocess.Popen(["sleep", "7777"])  # a child in the same group: must die with us
        while True:
            time.sleep(1)
    time.sleep(float(CONFIG.get("delay_s", 0)))
    return 0 if mode == "no-reports" else None


def icpx(args: list[str]) -> int:
    if args == ["--version"]:
        print(BANNERS["icpx"])
        return 0
    if "-fsycl" not in args:  # CMake's compiler checks: icpx is a host C++ compiler too
        os.execvp("g++", ["g++", *args])
    out = Path(args[args.index("-o") + 1]) if "-o" in args else Path("a.out")
    if "-c" in args:
        out.write_bytes(b"")
        return 0
    if "-Xshardware" in args:
        log(f"icpx (test double): FPGA link of {out.name}")
        code = misbehave()
        if code is not None:
            return code
        target = Path(f"{out}.prj") / ONEAPI_JSON
        target.mkdir(parents=True, exist_ok=True)
        names = ["summary.ndjson", "loop_attr.ndjson"]
        if "-fsycl-link=early" not in args:
            names.append("quartus.ndjson")
        for name in names:
            shutil.copyfile(INSTALL / "reports" / name, target / name)
    out.write_bytes(b"")
    return 0


def main() -> int:
    with open(INSTALL / "calls.jsonl", "a") as f:
        f.write(json.dumps({"tool": TOOL, "args": sys.argv[1:], "cwd": os.getcwd()}) + "\n")
    if TOOL == "icpx":
        return icpx(sys.argv[1:])
    if sys.argv[1:] == ["-version"]:
        print(BANNERS["vitis_hls" if TOOL.startswith("vitis") else "vivado_hls"])
        return 0
    if not Path("build_prj.tcl").is_file() or not Path("project.tcl").is_file():
        log("ERROR: [HLS 200-70] Cannot find build_prj.tcl in the working directory")
        return 1
    top = re.search(r'set project_name "(\w+)"', Path("project.tcl").read_text())
    if top is None:
        log("ERROR: project.tcl names no project")
        return 1
    name = top.group(1)
    opts = options()
    log(f"INFO: [HLS 200-10] Running '{TOOL}' (test double) with {opts}")
    mode = CONFIG.get("mode", "ok")
    if mode == "fail":
        log("ERROR: [Common 17-345] A valid license was not found for feature 'HLS'.")
        log("INFO: [Common 17-206] Exiting vivado_hls at Thu Nov 26 10:00:00 2026...")
        return 1
    if mode == "hang":
        subprocess.Popen(["sleep", "7777"])  # a child in the same group: must die with us
        while True:
            time.sleep(1)
    time.sleep(float(CONFIG.get("delay_s", 0)))
    if mode == "no-reports":
        return 0
    reports = INSTALL / "reports"
    if opts.get("synth"):
        target = Path(f"{name}_prj/solution1/syn/report")
        target.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(reports / "myproject_csynth.xml", target / f"{name}_csynth.xml")
        shutil.copyfile(reports / "myproject_csynth.rpt", target / f"{name}_csynth.rpt")
        if (reports / "csynth.xml").exists():
            shutil.copyfile(reports / "csynth.xml", target / "csynth.xml")
        log(f"INFO: [HLS 200-111] Finished C synthesis of {name}.")
    if opts.get("vsynth") and (reports / "vivado_synth.rpt").exists():
        shutil.copyfile(reports / "vivado_synth.rpt", "vivado_synth.rpt")
        log("INFO: [Common 17-206] Finished logic synthesis.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
