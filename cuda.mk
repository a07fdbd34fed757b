# cuda.mk - the deterministic CUDA backend's build (included by the Makefile).
#
#   make cuda-lib   kernels/*.cu -> $(BUILD)/libcellpose_cuda.a   (when nvcc is found)
#   make cuda-gate  compile every kernels/*.cu with the deterministic flags,
#                   dump PTX and SASS, fail on any forbidden instruction
#                   (tests/cuda_gate.sh; runs without a GPU)
#   make test-cuda  the CUDA bitwise tests (tests/cuda_*.cu; SKIPPED without a GPU)
#   make cuda-emu   kernels/*.cu + tests/cuda_ops.cu built with g++ against the
#                   host emulation of the CUDA runtime (tests/cuda_emu/) and run
#                   on the CPU: every op byte-equal to its CPU twin in three
#                   schedule orders (tests/cuda_emu.sh; no nvcc, no GPU: every CI)
#
# Flags (DESIGN.md rule 4): NVFLAGS from the Makefile (--fmad=false
# -prec-div=true -prec-sqrt=true -ftz=false, -arch=sm_$(CUDA_ARCH)); the host
# side of each .cu is compiled with -ffp-contract=off like the C code.
# The SASS half of the gate needs cuobjdump: from $(CUOBJDUMP), the PATH, the
# CUDA toolkit, or NVIDIA's pip wheel installed into build/cudatools
# (`make cuda-tools`, the same pip --target pattern as pydeps).

# CUDA_DEBUG=1: synchronize after every launch (cuda_check.h), so an error
# names the kernel that caused it.
CUDA_DEBUG_FLAGS := $(if $(filter 1,$(CUDA_DEBUG)),-DCP_CUDA_SYNC_CHECK -lineinfo)
CUDA_SRC := $(wildcard kernels/*.cu core/*.cu)
CUDA_LIB := $(BUILD)/libcellpose_cuda.a
CUDA_HDRS := $(HDRS) kernels/ops_cuda.h
CUDA_TOOLS := $(abspath build/cudatools)
CUOBJDUMP_WHEEL := nvidia-cuda-cuobjdump==13.2.78 nvidia-cuda-nvdisasm==13.2.86

.PHONY: cuda-lib cuda-gate cuda-tools cuda-emu

ifneq ($(NVCC),)
CUDA_OBJ := $(patsubst %.cu,$(BUILD)/%.cu.o,$(CUDA_SRC))

$(BUILD)/%.cu.o: %.cu $(CUDA_HDRS)
	@mkdir -p $(@D)
	$(NVCC) $(NVFLAGS) $(CUDA_DEBUG_FLAGS) $(if $(filter true,$(CI)),-Werror all-warnings -Xcompiler -Werror) -Xcompiler -Wall -c $< -o $@

$(CUDA_LIB): $(CUDA_OBJ)
	@rm -f $@
	ar rcs $@ $^

cuda-lib: $(CUDA_LIB)
all: $(CUDA_LIB)

# CUDA tests that use the backend link it (the Makefile's pattern rule links libcellpose.a only).
$(BUILD)/tests/cuda_ops: tests/cuda_ops.cu $(CUDA_LIB) $(LIB) $(CUDA_HDRS)
	@mkdir -p $(@D)
	$(NVCC) $(NVFLAGS) $(CUDA_DEBUG_FLAGS) $< $(CUDA_LIB) $(LIB) -o $@ -Xcompiler -fopenmp -ltiff -lyaml -ljansson -lcrypto -lstb -lcairo -lm

cuda-gate:
	@if [ -z "$(CUOBJDUMP)" ] && ! command -v cuobjdump >/dev/null && [ ! -x "$(dir $(NVCC))cuobjdump" ] && \
	    ! ls $(CUDA_TOOLS)/nvidia/cu*/bin/cuobjdump >/dev/null 2>&1; then $(MAKE) --no-print-directory cuda-tools; fi
	@CUOBJDUMP="$(CUOBJDUMP)" NVCC="$(NVCC)" NVFLAGS="$(NVFLAGS)" CUDA_TOOLS="$(CUDA_TOOLS)" OUT="$(BUILD)/cuda-gate" bash tests/cuda_gate.sh $(wildcard kernels/*.cu)
else
cuda-lib:
	@echo "cuda-lib: SKIPPED (nvcc not found)"
cuda-gate:
	@echo "cuda gate: SKIPPED (nvcc not found)"
endif

# Needs only g++ and the C library: runs with or without nvcc.
cuda-emu: $(LIB)
	@BUILD=$(BUILD) CPU_ARCH=$(CPU_ARCH) bash tests/cuda_emu.sh

# cuobjdump for the SASS gate when the toolkit lacks it (pip wheel, no system change).
cuda-tools: $(CUDA_TOOLS)/.stamp
$(CUDA_TOOLS)/.stamp: cuda.mk
	@echo "cuda-tools: installing $(CUOBJDUMP_WHEEL) into $(CUDA_TOOLS)"
	@mkdir -p $(CUDA_TOOLS)
	@$(PYTHON) -m pip install -q --disable-pip-version-check --no-deps --target $(CUDA_TOOLS) --upgrade $(CUOBJDUMP_WHEEL)
	@touch $@
