# `make test` and `make demo` each set up everything they need; both are idempotent.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
APT_PACKAGES := libegl1 libegl-mesa0 libgl1-mesa-dri libglvnd0 libosmesa6 libusb-1.0-0 tmux
export MUJOCO_GL ?= egl

.PHONY: setup test demo bench lint clean

setup: $(STAMP)

$(STAMP): pyproject.toml constraints-cpu.txt
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  missing=$$(for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || printf "%s " $$p; done); \
	  if [ -n "$$missing" ]; then echo "apt-get install $$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; fi; \
	else echo "not root: make sure these Debian packages are installed: $(APT_PACKAGES)"; fi
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	@# torch is pinned to the CPU wheel unless the machine has an NVIDIA driver.
	if command -v nvidia-smi >/dev/null && nvidia-smi >/dev/null 2>&1; then \
	  $(PY) -m pip install -q -e '.[dev,hw,ros,realsense,viz,dist,warp]'; \
	else \
	  $(PY) -m pip install -q -c constraints-cpu.txt -e '.[dev,hw,ros,realsense,viz,dist,warp]'; fi
	touch $(STAMP)

test: setup
	$(PY) -m pytest -q -n 2 --dist loadgroup

demo: setup
	$(VENV)/bin/robotrl demo --cameras --out out/demo

bench: setup
	$(VENV)/bin/robotrl bench sim

lint: setup
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

clean:
	rm -rf $(VENV) out .pytest_cache
