"""RTL simulation of the open flow's Verilog with Verilator, compared bit for bit with Keras.

da4ml ships an emulator build (`build_binder.mk`) that does not work with Debian 12's Verilator
5.006 (it parses an empty `VERILATOR_ROOT` and links archives `-build` does not leave). Ours is a
small testbench of our own: it reads one sample per line of an input file (the input port's
bits in hex), evaluates the combinational design and writes the output port the same way. The
packing is in `capsule.flow.rtl`, in Python, so the testbench knows nothing of precisions.

The build happens in a scratch folder inside the stage's output folder, which is removed after
the run: Verilator's object folder holds absolute paths and build products, none of them an
artifact. Its output goes to `verilator.log` (logs are not hashed).
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np

from capsule.errors import StageError
from capsule.flow.data import Inputs, NpyFile, NpyWriter, iter_batches, read_ranges, rows
from capsule.flow.rtl import TOP, Design, pack_inputs, unpack_outputs
from capsule.process import log_tail, run_group
from capsule.tasks import Tally

TESTBENCH = "testbench.cpp"
BINARY = "Vtestbench"
SIM_BATCH = 4096  # rows per simulator run: one process start per batch, files stay small
# Verilator 5.006 stops on lint codes it does not know yet, and da4ml's library (written for a
# newer Verilator) turns one of them off in a comment. Only the simulation's copy loses the
# comment; the Verilog artifacts and what Yosys reads stay as da4ml wrote them.
UNKNOWN_LINT = re.compile(r"/\*\s*verilator\s+lint_(?:off|on)\s+WIDTHTRUNC\s*\*/")

_TESTBENCH_CPP = r"""// capsule's RTL testbench: argv[1] holds one sample per line, the input port
// in hex (most significant digit first, whole 32-bit words); argv[2] gets the
// output port the same way.
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>
#include "Vmodel.h"
#include "verilated.h"

// A port of no bits is declared [-1:0] by da4ml and still takes one word of hex.
static const std::size_t IN_WORDS = IN_BITS > 0 ? (IN_BITS + 31) / 32 : 1;
static const std::size_t OUT_WORDS = OUT_BITS > 0 ? (OUT_BITS + 31) / 32 : 1;

static bool words_of(const std::string& hex, std::vector<uint32_t>& w) {
    if (hex.size() != 8 * IN_WORDS) return false;
    for (std::size_t i = 0; i < IN_WORDS; ++i) {
        std::size_t at = hex.size() - 8 * (i + 1);
        w[i] = static_cast<uint32_t>(std::stoul(hex.substr(at, 8), nullptr, 16));
    }
    return true;
}

template <typename T> static void set_port(T& port, const std::vector<uint32_t>& w) {
    uint64_t v = w[0];
    if (w.size() > 1) v |= static_cast<uint64_t>(w[1]) << 32;
    port = static_cast<T>(v);
}
template <std::size_t N> static void set_port(VlWide<N>& port, const std::vector<uint32_t>& w) {
    for (std::size_t i = 0; i < N; ++i) port[i] = w[i];
}
template <typename T> static void get_port(const T& port, std::vector<uint32_t>& w) {
    uint64_t v = static_cast<uint64_t>(port);
    w[0] = static_cast<uint32_t>(v);
    if (w.size() > 1) w[1] = static_cast<uint32_t>(v >> 32);
}
template <std::size_t N> static void get_port(const VlWide<N>& port, std::vector<uint32_t>& w) {
    for (std::size_t i = 0; i < N; ++i) w[i] = port[i];
}

int main(int argc, char** argv) {
    if (argc != 3) return 2;
    std::ifstream in(argv[1]);
    std::FILE* out = std::fopen(argv[2], "w");
    if (!in || out == nullptr) return 2;
    VerilatedContext context;
    Vmodel dut{&context};
    std::vector<uint32_t> inp(IN_WORDS, 0), res(OUT_WORDS, 0);
    std::string line;
    while (std::getline(in, line)) {
        if (!words_of(line, inp)) return 3;
        set_port(dut.model_inp, inp);
        dut.eval();
        get_port(dut.model_out, res);
        for (std::size_t i = OUT_WORDS; i-- > 0;) std::fprintf(out, "%08x", res[i]);
        std::fprintf(out, "\n");
    }
    dut.final();
    return std::fclose(out) == 0 ? 0 : 4;
}
"""


def build(rtl: Path, design: Design, scratch: Path, timeout: float, log: Path) -> Path:
    """Verilate the design and compile it with the testbench in `scratch`; the binary's path.

    Sources are copied into `scratch` and named relatively, so nothing of the trial folder's
    location reaches a command line. Verilator only translates (`--cc`); g++ compiles in one
    call, not Verilator's `--build`, which needs `make`: the trial image has g++ and Verilator
    but no make (debootstrap's minbase, `--no-install-recommends`). `-O0`: compiling dominates;
    on the 64-16-10 digits design (15k LUTs) g++ took 32 s at -O0 and 134 s at -O1, while
    simulating a test split takes well under a second either way.

    A design with no input bits (a model trained to zero-bit inputs computes a constant) or no
    output bits is still a design: da4ml declares such a port `[-1:0]`, and it is simulated and
    synthesized like any other, so its trial records what it computes instead of failing.
    """
    scratch.mkdir(parents=True, exist_ok=True)
    for name in design.sources:
        text = (rtl / name).read_text()
        (scratch / name).write_text(UNKNOWN_LINT.sub("", text))
    for name in design.memfiles:
        shutil.copyfile(rtl / name, scratch / name)
    (scratch / TESTBENCH).write_text(_TESTBENCH_CPP)
    verilate = [
        "verilator", "--cc", "-Wno-fatal", "-Wno-lint", "-Wno-style",
        "--top-module", TOP, "-Mdir", "obj_dir", *design.sources,
    ]  # fmt: skip
    code = run_tool(verilate, scratch, timeout, log)
    if code != 0:
        raise StageError(f"Verilator failed (exit {code}): {log_tail(log, 3)}")
    include = verilator_root(scratch, timeout, log) / "include"
    generated = sorted(
        p.relative_to(scratch).as_posix() for p in (scratch / "obj_dir").glob("*.cpp")
    )
    compile_ = [
        "g++", "-std=c++17", "-O0", "-w",
        f"-DIN_BITS={design.input_bits}", f"-DOUT_BITS={design.output_bits}",
        "-Iobj_dir", f"-I{include}", f"-I{include / 'vltstd'}",
        TESTBENCH, *generated,
        str(include / "verilated.cpp"), str(include / "verilated_threads.cpp"),
        "-o", BINARY, "-pthread", "-latomic",
    ]  # fmt: skip
    code = run_tool(compile_, scratch, timeout, log)
    binary = scratch / BINARY
    if code != 0 or not binary.is_file():
        raise StageError(f"compiling the RTL simulation failed (exit {code}): {log_tail(log, 3)}")
    return binary


def verilator_root(cwd: Path, timeout: float, log: Path) -> Path:
    """Where Verilator's runtime sources are (`verilator --getenv VERILATOR_ROOT`), checked.

    da4ml's make file parses `verilator -V` for it and gets an empty line from Debian's 5.006."""
    import subprocess

    try:
        proc = subprocess.run(
            ["verilator", "--getenv", "VERILATOR_ROOT"],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=min(timeout, 60),
        )
    except FileNotFoundError:
        raise StageError("verilator is not installed (capsule doctor)") from None
    except subprocess.TimeoutExpired:
        raise StageError("verilator --getenv VERILATOR_ROOT did not answer") from None
    root = Path(proc.stdout.strip())
    if proc.returncode != 0 or not root.is_absolute() or not (root / "include").is_dir():
        raise StageError(f"verilator names no runtime folder (VERILATOR_ROOT {str(root)!r})")
    if not (root / "include" / "verilated.cpp").is_file():
        raise StageError(f"{root}/include has no verilated.cpp")
    return root


def simulate(
    binary: Path, design: Design, x: np.ndarray, scratch: Path, timeout: float, log: Path
) -> np.ndarray:
    """The design's outputs for the rows of `x`, as the values they stand for.

    The simulator runs in `scratch`, where the lookup-table files are: `$readmemh` opens them
    relative to the working folder.
    """
    inputs, outputs = scratch / "inputs.hex", scratch / "outputs.hex"
    inputs.write_text("".join(line + "\n" for line in pack_inputs(x, design.inputs)))
    code = run_tool([str(binary), inputs.name, outputs.name], scratch, timeout, log)
    if code != 0:
        raise StageError(f"RTL simulation failed (exit {code}): {log_tail(log, 3)}")
    lines = outputs.read_text().split()
    if len(lines) != len(x):
        raise StageError(f"RTL simulation wrote {len(lines)} outputs for {len(x)} samples")
    return unpack_outputs(lines, design.outputs)


def run_tool(command: list[str], cwd: Path, timeout: float, log: Path) -> int:
    try:
        code = run_group(command, log=log, timeout=timeout, cwd=cwd)
    except FileNotFoundError:
        raise StageError(f"{command[0]} is not installed (capsule doctor)") from None
    if code is None:
        from capsule.errors import StageTimeout

        raise StageTimeout(f"{Path(command[0]).name} ran out of its {timeout:g} s")
    return code


def rtlsim(
    rtl: Path,
    design: Design,
    inputs: Inputs,
    test: list[tuple[int, int]],
    batch_size: int,
    float_predictions: Path,
    out: Path,
    predictions: Path,
    timeout: float,
    tally: Tally,
    scores: Path,
) -> dict[str, float]:
    """Simulate the test split (building in `out`) into `predictions`, scored and compared with
    Keras as the task says (`tally`).

    For an HGQ2 model the Keras predictions are themselves fixed point, so a correct design gives
    `rtlsim_max_abs_diff == 0.0` exactly, the number to check. Outputs are kept as float64: a
    fixed-point output wider than float32's 24 bits would round there.
    """
    scratch = out / "build"
    log = out / "verilator.log"
    reference = NpyFile(float_predictions)
    writer: NpyWriter | None = None
    offset = 0
    try:
        binary = build(rtl, design, scratch, timeout, log)
        for batch in iter_batches(test, max(batch_size, SIM_BATCH)):
            x, y = inputs.batch(batch)
            p = simulate(binary, design, x, scratch, timeout, log)
            if writer is None:
                writer = NpyWriter(predictions, rows(test), p.shape[1:], np.float64)
            writer.write(p)
            f = read_ranges(reference, [(offset, offset + len(x))]).reshape(len(x), -1)
            offset += len(x)
            tally.add(x, y, p, f.astype(np.float64), inputs.flags(batch))
    finally:
        reference.close()
        if writer is not None:
            writer.close()
        shutil.rmtree(scratch, ignore_errors=True)
    tally.write_scores(scores)
    return tally.metrics()
