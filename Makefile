# Two commands for a fresh clone: `make demo` and `make test`. Both create .venv/ when needed.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO := capsules/digits-mlp
# Where the CPU build of torch is found (requirements/torch.in): a folder of wheels, as on this
# machine, or https://download.pytorch.org/whl/cpu/torch/ where that index is reachable.
TORCH_WHEELS ?= /opt/wheels
UV_COMPILE := $(BIN)/uv pip compile --quiet --generate-hashes --python-version 3.11 \
	--python-platform x86_64-manylinux_2_28

.PHONY: venv demo test test-fast install-check lint format bench lock clean image image-check verify-check

venv: $(STAMP)

# pip installs uv (hash-pinned), and uv the locks: the same hashes checked, in seconds rather than
# the minutes pip takes (downloads in parallel, a shared cache linked into each venv). Bytecode is
# compiled at install, as pip does: where PYTHONDONTWRITEBYTECODE is set (this CI machine) nothing
# else writes it, and every trial process then compiled TensorFlow again (9.7 CPU-s an import
# against 4.2).
$(STAMP): pyproject.toml requirements/uv.txt requirements/runtime.txt requirements/dev.txt \
		requirements/torch.txt requirements/brevitas.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --require-hashes -r requirements/uv.txt
	$(BIN)/uv pip install --quiet --python $(BIN)/python --require-hashes --compile-bytecode \
		--find-links $(TORCH_WHEELS) \
		-r requirements/runtime.txt -r requirements/dev.txt -r requirements/torch.txt
	$(BIN)/pip install --quiet --no-deps --no-build-isolation -e .
	rm -rf $(VENV)/brevitas
	$(BIN)/pip install --quiet --require-hashes --no-deps --target $(VENV)/brevitas \
		-r requirements/brevitas.txt
	touch $(STAMP)

demo: $(STAMP)
	test -f $(DEMO)/exp.toml || $(BIN)/capsule init $(DEMO)
	test -f $(DEMO).capsule || $(BIN)/capsule pack $(DEMO)/exp.toml -o $(DEMO).capsule
	$(BIN)/capsule run $(DEMO).capsule

# Three workers on two cores: a worker waiting on a timeout, a container or a cluster leaves its
# core to the others (measured here: 14.4 min with three, 22.6 with two). A test file stays on one
# worker, so its module fixtures (a trained model, a packed capsule) are made once and its Docker
# checks see only its own containers. Files are handed out in collection order, the longest first
# (tests/conftest.py), not xdist's default of the files with the most tests first, which left the
# long end-to-end files, each of a few tests, to the end.
# The wheel-install check (tests/integration/test_install.py) is its own target and CI phase.
test: $(STAMP)
	$(BIN)/pytest -n 3 --dist loadfile --no-loadscope-reorder -m "not install"

# The unit tests only, on two workers (about 2 minutes): the edit loop's check.
test-fast: $(STAMP)
	$(BIN)/pytest -n 2 --dist loadfile tests/unit

# `python -m build`, then the wheel installed into fresh venvs on Python 3.11 and 3.12, each of
# which runs init, pack, a local trial and the image's build context from the installed package.
# One process: two builds of the checkout at once share its build folders and break each other.
install-check: $(STAMP)
	$(BIN)/pytest -p no:xdist -m install tests/integration/test_install.py

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy capsule
	$(BIN)/python .ci/import_cycles.py capsule

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: $(STAMP)
	$(BIN)/python -m bench

# The trial images (and their debootstrap base when absent), offline, with reproducible ids: the
# trial image, and the PyTorch trial image on it.
image: $(STAMP)
	$(BIN)/capsule image build
	$(BIN)/capsule image build --torch

# Shows that the image id is reproducible: a second build of every step gives the same id.
image-check: image
	first=$$($(BIN)/capsule image build | tail -n 1); \
	second=$$($(BIN)/capsule image build --no-cache | tail -n 1); \
	echo "first build  $$first"; echo "second build $$second"; test "$$first" = "$$second"

# A capsule made by this checkout verifies from a fresh clone with its own caches (.ci/cross-verify).
verify-check: image
	bash .ci/cross-verify

# Re-resolve the hash-pinned locks from requirements/*.in (needs the registry). runtime.txt and
# torch.txt are links to the locks inside the package (capsule/images/*/requirements.txt), which
# uv writes through.
lock: $(STAMP)
	$(UV_COMPILE) requirements/runtime.in -o requirements/runtime.txt
	$(UV_COMPILE) requirements/dev.in -o requirements/dev.txt
	$(UV_COMPILE) --find-links $(TORCH_WHEELS) requirements/torch.in -o requirements/torch.txt
	$(UV_COMPILE) --no-deps requirements/brevitas.in -o requirements/brevitas.txt
	$(UV_COMPILE) requirements/uv.in -o requirements/uv.txt

clean:
	rm -rf $(VENV) $(DEMO) $(DEMO).capsule $(DEMO)-trial .pytest_cache .mypy_cache .ruff_cache
