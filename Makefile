# The lab's entry points. Every target installs first (a no-op when up to date).
# Run as root: the lab creates network namespaces, links and TUN devices.
PY := .venv/bin/python

.PHONY: install demo test unit emulation bench clean

install:
	@bash scripts/install.sh

# The README's main command: the VM move in all four modes, report in captures/<run-id>/.
demo: install
	.venv/bin/lisp-lab demo

# The README's test command is `sudo make test`: unit tests, then emulation tests.
test: install
	$(PY) -m pytest tests

unit: install
	$(PY) -m pytest tests/unit

emulation: install
	$(PY) -m pytest tests/emulation

# Benchmarks write their numbers to bench/results/ and print them.
bench: install
	$(PY) -m bench

clean:
	-@[ -x $(PY) ] && $(PY) -m lab.cli clean || true
