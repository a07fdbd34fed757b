# cellpose.c - one plain Makefile (STYLE.md "Build").
#
#   make deps       install Debian packages (apt-get) and Python test packages (pip); idempotent
#   make / all      bin/train bin/infer bin/compare bin/eval bin/inspect (+ CUDA parts when nvcc is found)
#   make test       deps + build + every test (C units, Python references, CLI, sanitizer run, CUDA)
#   make test-cuda  the CUDA bitwise tests alone (SKIPPED without a GPU)
#   make sanitize   build with ASan+UBSan into build-san/ and run the C unit tests there
#   make bench      benchmarks (bench/)
#   make run        the main job on the bundled sample data
#   make clean
#
# Determinism-relevant flags (DESIGN.md rule 4): the host compiles with
# -ffp-contract=off (no silent fused multiply-add) and never -ffast-math;
# nvcc compiles with --fmad=false -prec-div=true -prec-sqrt=true -ftz=false.

SHELL    := /bin/bash
CC       ?= cc
BUILD    ?= build
BIN      ?= bin
CPU_ARCH ?= native
CUDA_ARCH ?= 90
PYTHON   ?= /usr/bin/python3
PYDEPS   := $(abspath build/pydeps)
PYDEPS_V4 := $(abspath build/pydeps-v4)
VERSION  := 0.1.0

WARN     := -Wall -Wextra -Wshadow -Wno-unused-parameter
ifeq ($(CI),true)
WARN     += -Werror
endif
OPT      ?= -O2 -g
CFLAGS_ALL := -std=c11 $(OPT) -march=$(CPU_ARCH) -ffp-contract=off -fno-fast-math -fno-math-errno -fopenmp \
              -D_GNU_SOURCE -I. -Icore -Inets -Itrain -Iinfer -Ieval -I/usr/include/x86_64-linux-gnu -I/usr/include/stb $(shell pkg-config --cflags cairo 2>/dev/null) $(WARN) $(SAN) $(CFLAGS)
LDLIBS_ALL := -fopenmp $(SAN) -ltiff -lyaml -ljansson -lcrypto -lstb -lcairo -lm
TEST_LDLIBS := -lmpfr -lgmp

NVCC     ?= $(shell command -v nvcc 2>/dev/null)
NVFLAGS  := -O2 -std=c++17 -arch=sm_$(CUDA_ARCH) --fmad=false -prec-div=true -prec-sqrt=true -ftz=false \
            -I. -Icore -Xcompiler -ffp-contract=off

# ---- sources -------------------------------------------------------------
LIB_DIRS := core kernels nets train infer eval
LIB_SRC  := $(foreach d,$(LIB_DIRS),$(filter-out $(d)/cmd_%.c,$(wildcard $(d)/*.c)))
LIB_OBJ  := $(patsubst %.c,$(BUILD)/%.o,$(LIB_SRC))
LIB      := $(BUILD)/libcellpose.a
HDRS     := $(foreach d,$(LIB_DIRS) tests,$(wildcard $(d)/*.h))

CMD_SRC  := $(foreach d,$(LIB_DIRS),$(wildcard $(d)/cmd_*.c))
PROGS    := $(patsubst cmd_%,$(BIN)/%,$(basename $(notdir $(CMD_SRC))))

TEST_SRC := $(wildcard tests/test_*.c)
TESTS    := $(patsubst tests/%.c,$(BUILD)/tests/%,$(TEST_SRC))
BENCH_SRC := $(wildcard bench/bench_*.c)
BENCHES  := $(patsubst bench/%.c,$(BUILD)/bench/%,$(BENCH_SRC))

CUDA_TEST_SRC := $(wildcard tests/cuda_*.cu)
ifneq ($(NVCC),)
CUDA_TESTS := $(patsubst tests/%.cu,$(BUILD)/tests/%,$(CUDA_TEST_SRC))
endif

.PHONY: all deps test test-c test-cuda sanitize bench run clean pydeps
all: $(PROGS) $(TESTS) $(BENCHES) $(CUDA_TESTS)

# ---- version stamp (rewritten only when the commit changes) ---------------
GIT_COMMIT := $(shell git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)$(shell git diff --quiet HEAD -- 2>/dev/null || echo -dirty)
$(BUILD)/version_stamp.h: FORCE
	@mkdir -p $(@D)
	@printf '#define CP_VERSION "%s"\n#define CP_GIT_COMMIT "%s"\n' "$(VERSION)" "$(GIT_COMMIT)" > $@.new
	@cmp -s $@.new $@ && rm -f $@.new || mv $@.new $@
FORCE:
$(BUILD)/core/version.o: $(BUILD)/version_stamp.h
$(BUILD)/core/version.o: CFLAGS_ALL += -I$(BUILD)

# ---- rules ------------------------------------------------------------
$(BUILD)/%.o: %.c $(HDRS)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS_ALL) -c $< -o $@

$(LIB): $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BIN)/%: $(BUILD)/cmd_objs/%.o $(LIB)
	@mkdir -p $(@D)
	$(CC) $^ -o $@ $(LDLIBS_ALL)

$(BUILD)/cmd_objs/%.o: $(HDRS) | $(BUILD)/version_stamp.h
	@mkdir -p $(@D)
	$(CC) $(CFLAGS_ALL) -I$(BUILD) -c $(filter %/cmd_$*.c,$(CMD_SRC)) -o $@
# each program object depends on its own source
$(foreach s,$(CMD_SRC),$(eval $(BUILD)/cmd_objs/$(patsubst cmd_%.c,%,$(notdir $(s))).o: $(s)))

$(BUILD)/tests/%: tests/%.c $(LIB) $(HDRS)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS_ALL) $< $(LIB) -o $@ $(LDLIBS_ALL) $(TEST_LDLIBS)

$(BUILD)/bench/%: bench/%.c $(LIB) $(HDRS)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS_ALL) $< $(LIB) -o $@ $(LDLIBS_ALL) $(TEST_LDLIBS)

$(BUILD)/tests/cuda_%: tests/cuda_%.cu $(LIB) $(HDRS)
	@mkdir -p $(@D)
	$(NVCC) $(NVFLAGS) $< $(LIB) -o $@ -Xcompiler -fopenmp -ltiff -lyaml -ljansson -lcrypto -lstb -lcairo -lm

# ---- CUDA backend (kernels, PTX/SASS gate): its own file ------------------
-include cuda.mk

# ---- dependencies -------------------------------------------------------
DEB_PKGS := build-essential pkg-config libtiff-dev libyaml-dev libjansson-dev libssl-dev libstb-dev \
            libmpfr-dev libcairo2-dev python3 python3-numpy python3-pytest python3-tifffile python3-pip python3-torch \
            python3-scipy python3-numba python3-opencv python3-tqdm
SUDO := $(shell [ "$$(id -u)" = 0 ] || command -v sudo)
deps:
	@missing=""; for p in $(DEB_PKGS); do \
	  dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "deps: installing Debian packages:$$missing"; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing >/dev/null || exit 1; \
	fi
	@$(MAKE) --no-print-directory pydeps

# Python packages that Debian does not ship go into build/pydeps (pip --target),
# never into the system. PYTHONPATH points there when tests run. --no-deps:
# Cellpose's other imports come from Debian (torch, numpy, scipy, numba,
# opencv, tqdm) or are listed here (fastremap, fill_voids).
PIP_PKGS := safetensors==0.4.5 cellpose==3.1.1.3 fastremap==1.21.0 fill_voids==2.1.2 natsort==8.4.0 roifile==2024.9.15
pydeps: $(PYDEPS)/.stamp $(PYDEPS_V4)/.stamp
$(PYDEPS)/.stamp: Makefile
	@echo "deps: installing Python packages into $(PYDEPS): $(PIP_PKGS)"
	@mkdir -p $(PYDEPS)
	@$(PYTHON) -m pip install -q --disable-pip-version-check --no-warn-script-location \
	    --no-deps --target $(PYDEPS) --upgrade $(PIP_PKGS)
	@touch $@
# Cellpose v4 (Cellpose-SAM's Transformer) and segment-anything, for the ViT
# references only (tests/ref/vit.py puts this folder first on its own path;
# everything else keeps Cellpose 3.1.1.3).
PIP_PKGS_V4 := segment-anything==1.0 cellpose==4.0.9
$(PYDEPS_V4)/.stamp: Makefile
	@echo "deps: installing Python packages into $(PYDEPS_V4): $(PIP_PKGS_V4)"
	@mkdir -p $(PYDEPS_V4)
	@$(PYTHON) -m pip install -q --disable-pip-version-check --no-warn-script-location \
	    --no-deps --target $(PYDEPS_V4) --upgrade $(PIP_PKGS_V4)
	@touch $@

# ---- tests ------------------------------------------------------------
export PYTHONPATH := $(PYDEPS)$(if $(PYTHONPATH),:$(PYTHONPATH))
test: deps
	@$(MAKE) --no-print-directory all
	@$(MAKE) --no-print-directory cuda-gate
	@$(MAKE) --no-print-directory sanitize-build
	@BUILD=$(BUILD) BIN=$(BIN) PYTHON=$(PYTHON) bash tests/run_all.sh

test-c: all
	@for t in $(TESTS); do $$t || exit 1; done

test-cuda: all
	@if [ -z "$(NVCC)" ]; then echo "SKIPPED: nvcc not found, CUDA tests not built"; exit 0; fi; \
	for t in $(CUDA_TESTS); do $$t || exit 1; done

SAN_FLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
sanitize-build:
	@$(MAKE) --no-print-directory BUILD=build-san BIN=build-san/bin OPT="-O1 -g" SAN="$(SAN_FLAGS)" NVCC= \
	    $(patsubst $(BUILD)/%,build-san/%,$(TESTS)) $(patsubst $(BIN)/%,build-san/bin/%,$(PROGS))
sanitize: sanitize-build
	@for t in $(patsubst $(BUILD)/%,build-san/%,$(TESTS)); do CP_TEST_QUICK=1 $$t || exit 1; done

bench: all
	@BUILD=$(BUILD) PYTHON=$(PYTHON) bash bench/run_bench.sh

# The main job on the bundled data: train a small CPnet deterministically on
# the DSB2018 fluorescence nuclei (test loss on the held-out BBBC039 images),
# then segment the held-out BBBC039 images with it and score them against
# their ground truth (Cellpose's AP). Same seed, same hashes, on any machine
# and thread count.
RUN_DIR ?= run/sample
run: deps
	@$(MAKE) --no-print-directory all
	@rm -rf $(RUN_DIR)
	$(BIN)/train --deterministic --seed 42 --config configs/sample.yaml \
	    --data data/samples/dsb2018_stage1test_fluo --test-data data/samples/bbbc039_u2os_nuclei --out $(RUN_DIR)
	@$(PYTHON) -c 'import json; m = json.load(open("$(RUN_DIR)/manifest.json")); e = m["epochs"]; \
	  print("epochs %d, train loss %.4f -> %.4f, test loss %s" % (len(e), e[0]["train_loss"], e[-1]["train_loss"], \
	  [round(x["test_loss"], 4) for x in e if x["test_loss"] is not None]))'
	@for i in 000 001 002; do \
	  $(BIN)/infer $(RUN_DIR)/model.bin data/samples/bbbc039_u2os_nuclei/bbbc039_$$i.tif --out $(RUN_DIR) --save-flows --save-outlines \
	    --gt data/samples/bbbc039_u2os_nuclei/bbbc039_$${i}_masks.tif || exit 1; \
	done | $(PYTHON) -c 'import json, sys; \
	  [print("%s: %d masks, AP@0.5 %.3f, AP@0.75 %.3f, masks sha256 %.16s, %.1f s" % (d["image"].split("/")[-1], d["masks"], \
	  d["ap"]["ap50"], d["ap"]["ap75"], d["masks_sha256"], d["seconds"]["total"])) for d in map(json.loads, sys.stdin)]'
	@echo "the model next to classical thresholding on the same held-out images (Cellpose's AP, mean over images):"
	@$(BIN)/eval --baseline all --images data/samples/bbbc039_u2os_nuclei --gt data/samples/bbbc039_u2os_nuclei --pred $(RUN_DIR)
	@echo "run folder: $(RUN_DIR) (model.bin, checkpoint.bin, manifest.json, loss.png, *_cp_masks.tif, *_flows.tif, *_outlines.png)"

clean:
	rm -rf build build-san bin
