#!/usr/bin/env bash
# The whole test suite: installs what is missing, then
#   1. libFuzzer runs of the checkpoint parser, of the .npy header / .npz directory reader and of
#      the PNG/JPEG decoding of image folders (bounded time),
#   2. the host tests under AddressSanitizer + UndefinedBehaviorSanitizer,
#   3. the release build (CUDA sources included when the toolkit is present) and every test; the
#      `gpu` tests report as skipped where no GPU is usable.
# Ends with ctest's summary line of step 3; exits non-zero when any step failed.
set -uo pipefail
cd "$(dirname "$0")/.."
jobs=$(nproc 2>/dev/null || echo 2)
fuzz_seconds=${CUVAE_FUZZ_SECONDS:-60}
fuzz_npy_seconds=${CUVAE_FUZZ_NPY_SECONDS:-20}
fuzz_image_seconds=${CUVAE_FUZZ_IMAGE_SECONDS:-15}
status=0

bash tests/install_deps.sh --test || { echo "run_all: installing dependencies failed"; exit 1; }

echo "== fuzz: checkpoint parser, ${fuzz_seconds}s; .npy/.npz reader, ${fuzz_npy_seconds}s;" \
    "PNG/JPEG decoding, ${fuzz_image_seconds}s"
if command -v clang >/dev/null; then
    CC=clang cmake -S . -B build-fuzz -DCUVAE_FUZZ=ON -DCUVAE_WITH_CUDA=OFF -DBUILD_TESTING=ON \
        -DCMAKE_BUILD_TYPE=RelWithDebInfo >build-fuzz.log 2>&1 &&
        cmake --build build-fuzz --target fuzz_checkpoint cuvae_fuzz_corpus fuzz_npy \
            cuvae_fuzz_npy_corpus fuzz_image cuvae_fuzz_image_corpus -j"$jobs" \
            >>build-fuzz.log 2>&1
    if [ $? -ne 0 ]; then
        tail -30 build-fuzz.log; echo "run_all: fuzz build failed"; status=1
    else
        rm -rf build-fuzz/corpus && mkdir -p build-fuzz/corpus
        # Without its seeds the fuzzer starts from nothing and rarely gets past the header.
        if ! CUVAE_FUZZ_CORPUS=build-fuzz/corpus ./build-fuzz/tests/cuvae_fuzz_corpus >/dev/null; then
            echo "run_all: writing the fuzz corpus failed"; status=1
        fi
        if ./build-fuzz/tests/fuzz_checkpoint -max_total_time="$fuzz_seconds" -rss_limit_mb=2048 \
            -print_final_stats=1 build-fuzz/corpus >build-fuzz/fuzz.log 2>&1; then
            grep -E 'stat::number_of_executed_units|Done' build-fuzz/fuzz.log | tail -2
        else
            tail -40 build-fuzz/fuzz.log; echo "run_all: the fuzzer found a failure"; status=1
        fi
        rm -rf build-fuzz/npy-corpus && mkdir -p build-fuzz/npy-corpus
        if ! CUVAE_FUZZ_CORPUS=build-fuzz/npy-corpus ./build-fuzz/tests/cuvae_fuzz_npy_corpus; then
            echo "run_all: writing the .npy fuzz corpus failed"; status=1
        fi
        if ./build-fuzz/tests/fuzz_npy -max_total_time="$fuzz_npy_seconds" -rss_limit_mb=2048 \
            -print_final_stats=1 build-fuzz/npy-corpus >build-fuzz/fuzz-npy.log 2>&1; then
            grep -E 'stat::number_of_executed_units|Done' build-fuzz/fuzz-npy.log | tail -2
        else
            tail -40 build-fuzz/fuzz-npy.log; echo "run_all: the .npy fuzzer found a failure"; status=1
        fi
        rm -rf build-fuzz/image-corpus && mkdir -p build-fuzz/image-corpus
        if ! CUVAE_FUZZ_CORPUS=build-fuzz/image-corpus ./build-fuzz/tests/cuvae_fuzz_image_corpus; then
            echo "run_all: writing the image fuzz corpus failed"; status=1
        fi
        if ./build-fuzz/tests/fuzz_image -max_total_time="$fuzz_image_seconds" -rss_limit_mb=2048 \
            -print_final_stats=1 build-fuzz/image-corpus >build-fuzz/fuzz-image.log 2>&1; then
            grep -E 'stat::number_of_executed_units|Done' build-fuzz/fuzz-image.log | tail -2
        else
            tail -40 build-fuzz/fuzz-image.log; echo "run_all: the image fuzzer found a failure"
            status=1
        fi
    fi
else
    echo "run_all: clang not found, fuzzing skipped"
fi

echo "== host tests under ASan + UBSan"
if cmake -S . -B build-asan -DCUVAE_SANITIZE=ON -DCUVAE_WITH_CUDA=OFF \
        -DCMAKE_BUILD_TYPE=RelWithDebInfo >build-asan.log 2>&1 &&
   cmake --build build-asan -j"$jobs" >>build-asan.log 2>&1; then
    (cd build-asan && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
        UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
        ctest --output-on-failure -j"$jobs" -LE gpu) || status=1
else
    tail -40 build-asan.log; echo "run_all: sanitizer build failed"; status=1
fi

echo "== release build and all tests"
if cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >build.log 2>&1 &&
   cmake --build build -j"$jobs" >>build.log 2>&1; then
    (cd build && ctest --output-on-failure -j"$jobs") || status=1
else
    tail -40 build.log; echo "run_all: build failed"; status=1
fi
exit $status
