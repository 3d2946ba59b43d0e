# citypatrol: `make demo` and `make test` do all the set-up on a fresh machine.
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip
STAMP  := $(VENV)/.installed
# Closed city networks: `make wheelhouse` where PyPI is reachable, copy the tree (with wheelhouse/) over,
# then `make install OFFLINE=1` (or `make test OFFLINE=1`) installs from the folder with no index.
WHEELHOUSE ?= wheelhouse
PIP_FROM   := $(if $(OFFLINE),--no-index --find-links $(WHEELHOUSE),)
export CITYPATROL_ASSET_MIRROR ?= $(abspath ../shared/assets)

.PHONY: demo test install wheelhouse system-deps clean bench bench-live bench-segments soak

# Debian packages: ffmpeg (test files), GStreamer RTSP server (loopback RTSP tests), Chromium (UI tests),
# Redis, PostgreSQL and Mosquitto (the tests use the machine's on their usual ports, or start private ones:
# tests/services.py).
SYSTEM_PKGS := ffmpeg python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-good \
	gstreamer1.0-plugins-bad gstreamer1.0-tools chromium fonts-wqy-microhei redis-server postgresql mosquitto

system-deps:
	@missing=""; for p in $(SYSTEM_PKGS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q $(PIP_FROM) --upgrade pip wheel setuptools

$(STAMP): pyproject.toml constraints.txt | $(PY)
	$(PIP) install -q $(PIP_FROM) -c constraints.txt -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

# Every pinned wheel citypatrol and its tests need, plus the build tools, in $(WHEELHOUSE)/ (several GB: torch).
wheelhouse: | $(PY)
	$(PIP) download -q -d $(WHEELHOUSE) pip wheel 'setuptools>=69'
	$(PIP) wheel -q -w $(WHEELHOUSE) -c constraints.txt '.[test]'
	@echo "$(WHEELHOUSE)/ holds $$(ls $(WHEELHOUSE) | wc -l) files; on the closed network: make install OFFLINE=1"

demo: install
	$(VENV)/bin/citypatrol demo --out demo_out

test: install system-deps
	$(VENV)/bin/python -m pytest -q -ra --durations=25

bench: install system-deps
	$(PY) benchmarks/bench_ingest.py

bench-live: install system-deps
	$(PY) benchmarks/bench_live.py

bench-segments: install system-deps
	$(PY) benchmarks/bench_segments.py

# The live stack on loopback RTSP cameras for SOAK_MINUTES; memory growth, lag, errors into benchmarks/RESULTS.md.
SOAK_MINUTES ?= 10
soak: install system-deps
	$(PY) benchmarks/soak.py --minutes $(SOAK_MINUTES) --write

clean:
	rm -rf $(VENV) demo_out .pytest_cache
