# A thin layer over CMake. `make demo` and `make test` install what they need first.
BUILD ?= build
JOBS ?= $(shell nproc)
CMAKE_FLAGS ?=
MODELS ?= models

.PHONY: all deps configure build test e2e-long demo bench bench-migration bench-operator gpu-bundle fuzz format clean

all: build

deps:
	@bash scripts/install-deps.sh

$(BUILD)/CMakeCache.txt:
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo $(CMAKE_FLAGS)

configure: deps $(BUILD)/CMakeCache.txt

build: configure
	cmake --build $(BUILD) -j $(JOBS)

# The whole test suite (unit tests; e2e-labelled tests too once they exist).
test: build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS) --timeout 600 -LE e2e-long

# The long end-to-end runs, not in test: the fault matrix over live migrations between real
# agents (tests/e2e/faults), minutes.
e2e-long: build
	cd $(BUILD) && ctest --output-on-failure -L e2e-long

demo: build
	@bash scripts/demo.sh $(BUILD) $(MODELS)

# Benchmarks: not part of `make test`. Writes docs/benchmarks.md.
bench: build
	@bash scripts/bench.sh $(BUILD) $(MODELS)

# The operator at scale alone (make bench runs it too): docs/benchmarks-operator.md.
bench-operator: build
	@bash scripts/bench-operator.sh $(BUILD)

# The migration benchmark alone (make bench runs it too): docs/benchmarks-migration.md.
bench-migration: build
	@bash scripts/bench-migration.sh $(BUILD) $(MODELS)

# The GPU checks' bundle (.gpu/): the GPU test binaries, hotswap-agent and their libraries, for
# a GPU machine without the Debian libraries; .gpu/gpu-check.sh runs the checks there.
gpu-bundle: build
	@bash scripts/gpu-bundle.sh $(BUILD) .gpu

# libFuzzer, FUZZ_SECONDS each, on the snapshot decoder, the operator's ModelDeployment reading,
# the agent's OpenAI request reading and the connection guard's HTTP framing, in its own build
# dir (clang, ASan, UBSan), on copies of fuzz/corpus/{snapshot,deployment,openai,framing};
# crashes land in $(FUZZ_BUILD)/artifacts/. Not part of test. docs/reliability.md records runs.
FUZZ_SECONDS ?= 60
FUZZ_BUILD ?= build-fuzz

fuzz:
	@if ! command -v clang++ >/dev/null 2>&1; then \
	  echo "fuzz: skipped: clang++ not found (make deps installs clang)"; exit 0; \
	fi; \
	probe=$$(mktemp -d); \
	printf 'extern "C" int LLVMFuzzerTestOneInput(const unsigned char*, unsigned long) { return 0; }\n' > $$probe/p.cpp; \
	if ! clang++ -fsanitize=fuzzer $$probe/p.cpp -o $$probe/p >/dev/null 2>&1; then \
	  rm -rf $$probe; \
	  echo "fuzz: skipped: clang has no libFuzzer runtime (Debian: libclang-rt-dev; make deps installs it)"; exit 0; \
	fi; \
	rm -rf $$probe; \
	set -e; \
	CC=clang CXX=clang++ cmake -S . -B $(FUZZ_BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo \
	  -DHOTSWAP_FUZZ=ON -DHOTSWAP_CUDA=OFF -DHOTSWAP_TESTS=OFF; \
	cmake --build $(FUZZ_BUILD) --target snapshot_decoder_fuzz deployment_spec_fuzz openai_request_fuzz http_framing_fuzz -j $(JOBS); \
	mkdir -p $(FUZZ_BUILD)/artifacts; \
	for t in snapshot:snapshot_decoder_fuzz:8192 deployment:deployment_spec_fuzz:4096 openai:openai_request_fuzz:4096 framing:http_framing_fuzz:4096; do \
	  corpus=$${t%%:*}; rest=$${t#*:}; target=$${rest%%:*}; max_len=$${rest#*:}; \
	  rm -rf $(FUZZ_BUILD)/corpus/$$corpus; mkdir -p $(FUZZ_BUILD)/corpus/$$corpus; \
	  cp fuzz/corpus/$$corpus/* $(FUZZ_BUILD)/corpus/$$corpus/; \
	  echo "== $$target for $(FUZZ_SECONDS) s"; \
	  $(FUZZ_BUILD)/fuzz/$$target -max_total_time=$(FUZZ_SECONDS) -max_len=$$max_len -rss_limit_mb=2048 \
	    -timeout=10 -print_final_stats=1 -artifact_prefix=$(FUZZ_BUILD)/artifacts/ $(FUZZ_BUILD)/corpus/$$corpus; \
	done

format:
	find common kernels agent e2e tests fuzz -name '*.h' -o -name '*.cpp' -o -name '*.cu' -o -name '*.cuh' | xargs clang-format -i

clean:
	rm -rf $(BUILD)
