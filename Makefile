# Thin wrapper over CMake + Ninja (DuckDB style).
BUILD ?= build
ASAN_BUILD ?= build-asan
TSAN_BUILD ?= build-tsan
JOBS ?= $(shell nproc)
CMAKE_FLAGS ?=

.PHONY: setup configure build run test test-asan test-tsan fuzz bench clean

setup:
	@bash scripts/setup.sh

$(BUILD)/build.ninja:
	cmake -S . -B $(BUILD) -G Ninja -DCMAKE_BUILD_TYPE=Release $(CMAKE_FLAGS)

configure: $(BUILD)/build.ninja

build: configure
	cmake --build $(BUILD) -j $(JOBS)

# The main job on the embedded default.
run: setup build
	bash scripts/run_demo.sh

test: setup build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS) --timeout 900

# Unit and concurrency tests under AddressSanitizer + UndefinedBehaviorSanitizer.
test-asan: setup
	cmake -S . -B $(ASAN_BUILD) -G Ninja -DCMAKE_BUILD_TYPE=Debug -DKVMART_SANITIZE=ON -DKVMART_BUILD_BENCH=OFF $(CMAKE_FLAGS)
	cmake --build $(ASAN_BUILD) -j $(JOBS)
	cd $(ASAN_BUILD) && ctest --output-on-failure -j $(JOBS) -L '^(unit|concurrency)$$' --timeout 900

# The concurrency tests (label `concurrency`: the market, the store, the
# server) under ThreadSanitizer; only their binaries are built. A report
# fails the test (halt_on_error); tests/tsan.supp lists the races inside
# third-party libraries shown benign (none in kvmart's code).
TSAN_TARGETS = market_concurrency_test store_test store_pg_test store_shared_test server_concurrency_test
test-tsan: setup
	cmake -S . -B $(TSAN_BUILD) -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DKVMART_TSAN=ON -DKVMART_BUILD_BENCH=OFF $(CMAKE_FLAGS)
	cmake --build $(TSAN_BUILD) -j $(JOBS) --target $(TSAN_TARGETS)
	cd $(TSAN_BUILD) && TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1 suppressions=$(CURDIR)/tests/tsan.supp $(TSAN_OPTIONS)" \
	  ctest --output-on-failure -j $(JOBS) -L '^concurrency$$' --timeout 900

# The fuzz targets (tests/fuzz/README.md) under libFuzzer + ASan + UBSan, each
# for FUZZ_SECONDS (clang).
FUZZ_BUILD ?= build-fuzz
FUZZ_SECONDS ?= 60
FUZZ_TARGETS = kvmart-fuzz-kva kvmart-fuzz-safetensors kvmart-fuzz-tokenizer kvmart-fuzz-receipt kvmart-fuzz-http
fuzz: setup
	cmake -S . -B $(FUZZ_BUILD) -G Ninja -DCMAKE_BUILD_TYPE=Debug -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_C_COMPILER=clang -DKVMART_FUZZ=ON -DKVMART_BUILD_BENCH=OFF $(CMAKE_FLAGS)
	cmake --build $(FUZZ_BUILD) -j $(JOBS) --target $(FUZZ_TARGETS)
	FUZZ_BUILD=$(FUZZ_BUILD) bash scripts/fuzz-run $(FUZZ_SECONDS)

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(TSAN_BUILD) $(FUZZ_BUILD)
