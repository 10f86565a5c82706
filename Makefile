# Reproduce the study. `make all` (the default) and `make test` are the two commands;
# `make help` lists every target with one line each (the `## ` comment after its name).
#
# Data flow, for each experiment E in $(EXPERIMENTS) (each arrow a file rule, so make redoes only
# what is out of date):
#   configs/E_$(PROFILE).toml -> results/E_$(PROFILE)/raw/*.csv         (python -m study run)
#     -> results/E_$(PROFILE)/tables/*.csv + macros.tex                  (python -m analysis)
#     -> results/E_$(PROFILE)/figures/fig_*.pdf|png                      (figures/fig_*.py)
#   -> paper/main.pdf                                                    (latexmk in paper/)

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := all
.DELETE_ON_ERROR:
MAKEFLAGS += --no-builtin-rules

PROFILE ?= quick
# E1: Boolean headline with the three P_B estimators cross-checked (E2) on its task;
# E2 and E2m64: larger training sets (m = 32, 64), where rejection is infeasible (SGD against
# MCMC and NNGP-EP); E1M: Mingard et al.'s own Boolean setting (E = every input outside S), at
# m = 32 and m = 64 (E1M64); E1MS: E1M with many runs of four settings, for Mingard et al.'s scatter;
# E1Mmaj: the same with the majority target;
# E1Mb0: E1M without biases (sigma_b = 0, Mingard et al.'s other prior);
# E3 and E3cnn: image tasks (binarised digits; MNIST in the full profile) with a fully connected and a
# convolutional network, against the exact NNGP posterior; E3G: E3's fully connected network at m = 10,
# where the geometry of SGD's points is measured beside exact posterior points (E4 at image points).
EXPERIMENTS ?= e1 e2 e2m64 e1m e1ms e1m64 e1mmaj e1mb0 e3 e3cnn e3g
NAMES = $(EXPERIMENTS:%=%_$(PROFILE))
CONFIGS = $(NAMES:%=configs/%.toml)
PY = .venv/bin/python

PYTHON311 ?= python3.11
PIP_VERSION = 26.3
# ACCEL=cuda12: the CUDA 12 build of the same jax/jaxlib (requirements/lock-cuda12.txt: the CPU lock plus
# the plugin and the NVIDIA libraries); cpu (default): requirements/lock.txt. `make venv ACCEL=cuda12` once
# on a GPU machine; later targets keep what is installed.
ACCEL ?= cpu
LOCK_cpu = requirements/lock.txt
LOCK_cuda12 = requirements/lock-cuda12.txt
LOCK = $(or $(LOCK_$(ACCEL)),$(error ACCEL=$(ACCEL) is not known: use cpu (the default) or cuda12))
VENV_STAMP = .venv/.installed$(if $(filter-out cpu,$(ACCEL)),-$(ACCEL))
PYTEST_ARGS ?=
# Extra flags for `python -m study` (e.g. STUDY_ARGS=--fresh); progress bars off under CI.
STUDY_ARGS ?= $(if $(CI),--no-progress)
TEX_PACKAGES = latexmk texlive-latex-base texlive-latex-recommended texlive-latex-extra texlive-fonts-recommended

FIGURES = fig_scatter fig_sgd_vs_ep fig_rankfreq fig_agreement fig_estimators
# Geometry figures (E4, E6) only for the experiments whose config has a [geometry] section (fig_identity
# only where it has dense Hessians: identity_points not 0), fig_sweep (E5) only for those with a [sweep] section, fig_mcmc_traces for those with [mcmc],
# fig_ep_mass (every run seen through EP's P_B) and fig_error_vs_pb for those with [nngp] (fig_ep_mass not
# where EP scores only the frequent functions: nngp.ep_min_count above 1).
GEOMETRY_FIGURES = fig_geometry fig_accessibility
with_section = $(foreach n,$(NAMES),$(if $(shell grep -l '^\[$(1)\]' configs/$(n).toml 2>/dev/null),$(n)))
GEOMETRY_NAMES = $(call with_section,geometry)
IDENTITY_NAMES = $(foreach n,$(GEOMETRY_NAMES),$(if $(shell grep -l '^identity_points = 0' configs/$(n).toml 2>/dev/null),,$(n)))
SWEEP_NAMES = $(call with_section,sweep)
MCMC_NAMES = $(call with_section,mcmc)
NNGP_NAMES = $(call with_section,nngp)
EP_MASS_NAMES = $(foreach n,$(NNGP_NAMES),$(if $(shell grep -lE '^ep_min_count = ([2-9]|[1-9][0-9]+)' configs/$(n).toml 2>/dev/null),,$(n)))
FIGURE_PDFS = $(foreach n,$(NAMES),$(FIGURES:%=results/$(n)/figures/%.pdf)) \
              $(foreach n,$(GEOMETRY_NAMES),$(GEOMETRY_FIGURES:%=results/$(n)/figures/%.pdf)) \
              $(IDENTITY_NAMES:%=results/%/figures/fig_identity.pdf) \
              $(SWEEP_NAMES:%=results/%/figures/fig_sweep.pdf) \
              $(MCMC_NAMES:%=results/%/figures/fig_mcmc_traces.pdf) \
              $(EP_MASS_NAMES:%=results/%/figures/fig_ep_mass.pdf) \
              $(NNGP_NAMES:%=results/%/figures/fig_error_vs_pb.pdf)
MACROS = $(NAMES:%=results/%/macros.tex)
FIGURE_LIB = $(filter-out $(FIGURES:%=figures/%.py) $(GEOMETRY_FIGURES:%=figures/%.py) figures/fig_identity.py figures/fig_sweep.py figures/fig_mcmc_traces.py figures/fig_ep_mass.py figures/fig_error_vs_pb.py,$(wildcard figures/*.py))
STUDY_SRC = $(wildcard study/*.py study/stages/*.py)
ANALYSIS_SRC = $(wildcard analysis/*.py)
PAPER_SRC = $(filter-out paper/profile.tex,$(wildcard paper/*.tex paper/*.bib paper/*.sty paper/*.cls))
LATEX_JUNK = $(addprefix paper/main.,pdf aux log out fls fdb_latexmk toc bbl blg bcf run.xml synctex.gz nav snm)

# TensorFlow is imported by neural-tangents; keep its start-up chatter out of the logs.
export TF_CPP_MIN_LOG_LEVEL = 3
export PYTHONUNBUFFERED = 1
export MPLBACKEND = Agg

START_TIME := $(shell date +%s)

# stage-<name> (pattern rule below) runs one stage; the stage names live in study/stages/__init__.py.
.PHONY: all help venv tex check study analysis figures paper test bench smoke clean distclean FORCE

# Analysis and figures are single-threaded Python: once the stages (which use every core themselves)
# are done, they run JOBS at a time.
JOBS ?= $(shell nproc 2>/dev/null || echo 1)

all: venv tex study ## set up what is missing and reproduce every table, figure and paper/main.pdf (PROFILE=quick)
	@$(MAKE) --no-print-directory -j$(JOBS) analysis figures
	@$(MAKE) --no-print-directory paper
	@s=$$(( $$(date +%s) - $(START_TIME) )); \
	printf 'make all (PROFILE=%s): done in %dh %02dm %02ds wall time\n' $(PROFILE) $$((s / 3600)) $$((s % 3600 / 60)) $$((s % 60))

help: ## list the targets with one line each
	@echo 'Usage: make [target] [PROFILE=smoke|quick|full]   (default target: all; PROFILE=$(PROFILE))'
	@echo
	@grep -hE '^[a-zA-Z_ %-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "} {printf "  %-22s %s\n", $$1, $$2}'
	@echo
	@echo 'Variables: PROFILE (configs configs/<experiment>_$$PROFILE.toml), EXPERIMENTS (default: $(EXPERIMENTS)),'
	@echo '           PYTEST_ARGS (extra pytest flags), JOBS (analyses and figures at once in make all; default: the cores),'
	@echo '           STUDY_ARGS (extra flags for python -m study, e.g. --fresh), PYTHON311 (interpreter for .venv),'
	@echo '           ACCEL (cpu, the default, or cuda12: the CUDA 12 build of jax for make venv)'

# ---------------------------------------------------------------------------------------------
# Environment

venv: $(VENV_STAMP) ## Python 3.11 virtualenv .venv with the exact pins of requirements/lock.txt (ACCEL=cuda12: lock-cuda12.txt)

$(VENV_STAMP): $(LOCK) requirements/lock.txt
	@if [ -x $(PY) ]; then \
	  $(PY) -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' || { \
	    echo "error: .venv is not Python 3.11 ($$($(PY) --version 2>&1)); remove it (make distclean) and rerun" >&2; exit 1; }; \
	else \
	  command -v $(PYTHON311) >/dev/null 2>&1 || { \
	    echo "error: $(PYTHON311) not found. This project needs Python 3.11 (the pins in requirements/lock.txt" >&2; \
	    echo "       are tested only there). Install it (Debian: apt-get install python3.11 python3.11-venv;" >&2; \
	    echo "       or pyenv install 3.11) or point to one: make PYTHON311=/path/to/python3.11" >&2; exit 1; }; \
	  $(PYTHON311) -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' || { \
	    echo "error: $(PYTHON311) is $$($(PYTHON311) --version 2>&1), not Python 3.11" >&2; exit 1; }; \
	  echo "venv: creating .venv with $$(command -v $(PYTHON311))"; \
	  if ! $(PYTHON311) -m venv .venv; then \
	    rm -rf .venv; \
	    if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	      echo "venv: installing python3.11-venv from Debian"; \
	      apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3.11-venv; \
	      $(PYTHON311) -m venv .venv; \
	    else \
	      echo "error: $(PYTHON311) -m venv failed; on Debian install python3.11-venv" >&2; exit 1; \
	    fi; \
	  fi; \
	fi
	$(PY) -m pip install --quiet --disable-pip-version-check pip==$(PIP_VERSION)
	$(PY) -m pip install --disable-pip-version-check -r $(LOCK)
	$(PY) -m pip install --disable-pip-version-check --no-deps -e .
	touch $@

tex: ## LaTeX (latexmk, pdflatex) for the paper: installed from Debian when missing (as root), else says what to install
	@if command -v latexmk >/dev/null 2>&1 && command -v pdflatex >/dev/null 2>&1; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "tex: installing $(TEX_PACKAGES) from Debian"; \
	  apt-get update; \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $(TEX_PACKAGES); \
	else \
	  echo "error: the paper needs latexmk and pdflatex, which are not on PATH. On Debian/Ubuntu install:" >&2; \
	  echo "       sudo apt-get install --no-install-recommends $(TEX_PACKAGES)" >&2; exit 1; \
	fi

# ---------------------------------------------------------------------------------------------
# Study stages: each writes chunks as they finish and resumes on rerun, so these rules are cheap
# to redo; a stage's final CSV is written (atomically) only when every chunk is done, and
# raw/stages.json only when every stage of the config is. A changed config or study code is
# refused with a message (rerun with STUDY_ARGS=--fresh to recompute).

check: venv ## validate every experiment's config without computing anything
	@for c in $(CONFIGS); do $(PY) -m study check --config $$c; done

study: $(NAMES:%=results/%/raw/stages.json) ## every stage of every experiment: results/<experiment>_<profile>/raw/*.csv

stage-%: venv ## one stage of every experiment that has it: make stage-<name> with a name from python -m study --help
	@for c in $(CONFIGS); do $(PY) -m study $* --config $$c --if-enabled $(STUDY_ARGS); done

results/%/raw/stages.json: configs/%.toml $(STUDY_SRC) | $(VENV_STAMP)
	$(PY) -m study run --config $< $(STUDY_ARGS)

# ---------------------------------------------------------------------------------------------
# Analysis, figures, paper. macros.tex is written last by the analysis, so it stands for the tables.

analysis: $(MACROS) ## tables (results/<experiment>_<profile>/tables/*.csv) and paper macros from the raw CSVs

results/%/macros.tex: results/%/raw/stages.json configs/%.toml $(ANALYSIS_SRC) | $(VENV_STAMP)
	$(PY) -m analysis --config configs/$*.toml

figures: $(FIGURE_PDFS) ## every figure (pdf and png) in results/<experiment>_<profile>/figures/, from the tables only

define FIGURE_RULE
results/$(1)/figures/%.pdf: figures/%.py results/$(1)/macros.tex $$(FIGURE_LIB) | $$(VENV_STAMP)
	$$(PY) $$< --config configs/$(1).toml
endef
$(foreach n,$(NAMES),$(eval $(call FIGURE_RULE,$(n))))

paper: tex figures paper/main.pdf ## paper/main.pdf from results/*_<profile> (figures and generated macros)

# The only thing LaTeX learns from make: which profile's results to read. Rewritten only when it changes.
paper/profile.tex: FORCE
	@printf '%% Generated by make (PROFILE=$(PROFILE)); do not edit.\n\\newcommand{\\resultsprofile}{$(PROFILE)}\n' > $@.tmp
	@if cmp -s $@.tmp $@; then rm -f $@.tmp; else mv -f $@.tmp $@; echo "wrote $@ (results from results/*_$(PROFILE))"; fi

paper/main.pdf: $(PAPER_SRC) paper/profile.tex $(MACROS) $(FIGURE_PDFS) | tex
	cd paper && latexmk -pdf -interaction=nonstopmode -halt-on-error -file-line-error main.tex
	touch $@

FORCE:

# ---------------------------------------------------------------------------------------------
# Checks

# The numerical tests run a second time under another XLA CPU configuration: the legacy CPU runtime
# emits small matrix products inline instead of calling library kernels, so it rounds differently.
# Code that converges on one CPU's kernels and breaks on another's shows up here, not on a user's
# machine. (Skipped when PYTEST_ARGS selects tests.)
XLA_SECOND_CONFIG = --xla_cpu_use_thunk_runtime=false
NUMERICAL_TESTS = tests/test_geometry.py tests/test_nngp.py tests/test_ess.py tests/test_truncated.py tests/test_mcmc.py

test: venv ## run the test suite with pytest (PYTEST_ARGS="-k name" to select), then its numerical tests under a second XLA CPU configuration; under 15 min on a 2-core CPU
	$(PY) -m pytest -q $(PYTEST_ARGS)
	$(if $(PYTEST_ARGS),,XLA_FLAGS="$(XLA_SECOND_CONFIG)" $(PY) -m pytest -q -p no:cacheprovider $(NUMERICAL_TESTS))

bench: venv ## benchmark: prints speed ratios against baselines measured in the same run
	$(PY) -m bench

smoke: venv ## the smoke pipeline (every stage, analysis, figures; no paper) on configs/*_smoke.toml, in seconds
	@$(MAKE) --no-print-directory PROFILE=smoke study analysis figures

# ---------------------------------------------------------------------------------------------
# Cleaning

clean: ## remove results/ (every profile!) and the paper's build products; keeps .venv
	rm -rf results paper/build
	rm -f paper/profile.tex paper/profile.tex.tmp $(LATEX_JUNK)

distclean: clean ## clean, and also remove .venv and Python caches
	rm -rf .venv *.egg-info .pytest_cache .hypothesis .make
	find . -name __pycache__ -type d -prune -not -path './.git/*' -exec rm -rf {} +
