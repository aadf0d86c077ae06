#!/usr/bin/env bash
# Everything the CUDA backend needs checked on a GPU, in one call (no step starts after
# CUVAE_DEVICE_BUDGET seconds), in order of importance (a later step that runs out of time costs
# nothing earlier):
#   1. build (Release, sm_90) with the dependencies carried in .device/ where the image lacks them;
#   2. the gpu-labelled tests (kernel parity, the whole step against the CPU, bf16, the step
#      graph, exact resume on the GPU);
#   3. compute-sanitizer memcheck and racecheck on a short training run and a short eval;
#   4. ten epochs of the default config on the GPU (test negative ELBO, against the CPU's) and
#      the K = 5000 bound of the full test set, timed, against the PyTorch peer's evaluation of
#      the same checkpoint; then ten epochs of cuvae against ten of PyTorch eager
#      (bench/run_peers.py --epoch 10: epoch times and test ELBOs); then the rest of the suite
#      (host and CLI tests: the CLI tests train, resume and evaluate on the GPU);
#   5. cuvae bench with and without the step graph, then bench/run_peers.py at batch 128 and 4096:
#      cuvae (step graph on) against PyTorch eager, its CUDA graph and JAX; the large config in
#      bf16 and tf32 against the TFLOP/s of its GEMMs alone (bench/peers/gemm_ceiling.py);
#   6. time to quality: configs/fashion_mnist_long.ini (the default architecture, longer, with KL
#      warm-up and a cosine schedule) trained on the GPU with the step graph, then the K = 5000
#      bound of the full test set, with the wall times (the speed issue's 230-nat target).
# Prepare here first with bench/device_prepare.sh and carry `.device`. Logs go to .device/out,
# and to $OUT as summary.txt (written line by line, so a call cut short still returns what was
# done) and logs.tgz when it is set; the summary is also the last lines printed.
#   CUVAE_DEVICE_STEPS="build gpu sanitize train all bench quality"   the steps (default: all)
#   CUVAE_DEVICE_BUDGET=540   seconds after which no further step starts (each has its timeouts)
#   CUVAE_DEVICE_PREFIX=1   use the carried prefix even where the image has the dependencies
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
# Logs gather in one folder; at the end they go to $OUT as one archive beside the summary (the
# device tool brings back only a few files).
out=$root/.device/out
rm -rf "$out" && mkdir -p "$out"
steps=${CUVAE_DEVICE_STEPS:-build gpu sanitize train all bench quality}
budget=${CUVAE_DEVICE_BUDGET:-540}
data=$root/.device/data/fashion-mnist
summary=()
t0=$(date +%s)
say() { echo "[$(($(date +%s) - t0))s] $*"; }
note() {
    summary+=("$*")
    say "$*"
    echo "$*" >>"$out/summary.txt"
    if [ -n "${OUT:-}" ]; then
        echo "$*" >>"$OUT/summary.txt"
        tar czf "$OUT/logs.tgz" -C "$out" . 2>/dev/null
    fi
}
elapsed() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f", b - a }'; }
want() {
    case " $steps " in *" $1 "*) ;; *) return 1 ;; esac
    if [ $(($(date +%s) - t0)) -ge "$budget" ]; then
        note "$1: not started, past the ${budget} s budget"
        return 1
    fi
}

# The peers' Python: the first that imports torch and numpy (the device image's python3 does).
py=python3
for cand in python3 /usr/bin/python3; do
    if command -v "$cand" >/dev/null && "$cand" -c 'import numpy, torch' 2>/dev/null; then
        py=$cand
        break
    fi
done

nvidia-smi -L 2>&1 | head -2
nvcc --version | tail -1

# --- dependencies: the image's own where it has them, else the carried Debian packages ----------
# Unpacked into a private prefix; pkg-config then resolves the packages' /usr paths inside it
# (PKG_CONFIG_SYSROOT_DIR), and the links Debian's alternatives would make are made here.
if [ -n "${CUVAE_DEVICE_PREFIX:-}" ] || ! pkg-config --exists zlib inih jansson openblas 2>/dev/null; then
    if ls "$root"/.device/debs/*.deb >/dev/null 2>&1; then
        prefix=/tmp/cuvae-prefix
        rm -rf "$prefix" && mkdir -p "$prefix"
        for deb in "$root"/.device/debs/*.deb; do
            if command -v dpkg-deb >/dev/null; then
                dpkg-deb -x "$deb" "$prefix"
            else
                python3 - "$deb" "$prefix" <<'PY'
import io, sys, tarfile
data = open(sys.argv[1], "rb").read()
pos = 8  # an ar archive: "!<arch>\n", then 60-byte member headers
while pos < len(data):
    name, size = data[pos:pos + 16].decode().strip(), int(data[pos + 48:pos + 58])
    if name.startswith("data.tar"):
        tarfile.open(fileobj=io.BytesIO(data[pos + 60:pos + 60 + size])).extractall(sys.argv[2])
    pos += 60 + size + (size & 1)
PY
            fi
        done
        multi=$prefix/usr/lib/x86_64-linux-gnu
        ln -sfn openblas-pthread/libopenblas.so.0 "$multi/libopenblas.so.0"
        ln -sfn openblas-pthread/libopenblas.so "$multi/libopenblas.so"
        export PATH=$prefix/usr/bin:$PATH
        export PKG_CONFIG_SYSROOT_DIR=$prefix
        export PKG_CONFIG_LIBDIR=$multi/pkgconfig:$multi/openblas-pthread/pkgconfig:$prefix/usr/share/pkgconfig
        export LD_LIBRARY_PATH=$multi:$multi/openblas-pthread${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
        export CMAKE_PREFIX_PATH=$prefix/usr
        say "dependencies: from the carried packages, unpacked in $prefix"
    else
        note "dependencies: missing and no .device/debs (run bench/device_prepare.sh here)"
    fi
fi
data_args=()
if [ -f "$data/train-images-idx3-ubyte.gz" ]; then
    data_args=(data.train_images="$data/train-images-idx3-ubyte.gz"
        data.train_labels="$data/train-labels-idx1-ubyte.gz"
        data.test_images="$data/t10k-images-idx3-ubyte.gz"
        data.test_labels="$data/t10k-labels-idx1-ubyte.gz")
fi

# --- 1. build -----------------------------------------------------------------------------------
bin=build-gpu/cuvae
if want build; then
    if cmake -S . -B build-gpu -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90 \
        >"$out/build.log" 2>&1 && cmake --build build-gpu -j"$(nproc)" >>"$out/build.log" 2>&1; then
        note "build: ok"
    else
        tail -30 "$out/build.log"
        note "build: FAILED (build.log)"
        steps=""
    fi
fi

# --- 2. tests -----------------------------------------------------------------------------------
if want gpu; then
    (cd build-gpu && timeout 240 ctest -L gpu --output-on-failure) >"$out/ctest-gpu.log" 2>&1
    note "ctest -L gpu: $(grep -E 'tests passed|tests failed' "$out/ctest-gpu.log" | tail -1)"
    grep -E '^[A-Za-z_].*(FAIL|fail|out of tolerance)' "$out/ctest-gpu.log" | head -15
fi

# --- 3. compute-sanitizer -------------------------------------------------------------------------
if want sanitize && [ ${#data_args[@]} -gt 0 ]; then
    small=(configs/smoke.ini "${data_args[@]}" data.limit_train=1000 data.validation=100
        data.limit_test=200 train.epochs=1 train.device=cuda train.precision=fp32
        output.images=1 output.dir=/tmp/cuvae_sanitize)
    for tool in memcheck racecheck; do
        rm -rf /tmp/cuvae_sanitize
        timeout 150 compute-sanitizer --tool "$tool" --error-exitcode 99 "$bin" train "${small[@]}" \
            >"$out/sanitize-$tool.log" 2>&1
        rc=$?
        timeout 60 compute-sanitizer --tool "$tool" --error-exitcode 99 "$bin" eval \
            /tmp/cuvae_sanitize/model.safetensors --device cuda --samples 50 --limit 100 \
            >>"$out/sanitize-$tool.log" 2>&1
        rc2=$?
        note "compute-sanitizer $tool: train rc=$rc, eval rc=$rc2; \
$(grep -E 'ERROR SUMMARY' "$out/sanitize-$tool.log" | tr '\n' ' ')"
    done
fi

# --- 4. ten epochs and the K = 5000 bound -------------------------------------------------------
# train_and_bound LABEL CONFIG RUN_DIR TRAIN_TIMEOUT [key=value ...]: trains CONFIG on the GPU,
# then evaluates the K = 5000 bound of the full test set; both timed, both in the summary.
train_and_bound() {
    local label=$1 config=$2 dir=$3 limit=$4 t rc
    shift 4
    rm -rf "$dir"
    t=$(date +%s.%N)
    timeout "$limit" "$bin" train "$config" "${data_args[@]}" train.device=cuda output.images=0 \
        output.dir="$dir" "$@" >"$out/train-$label.log" 2>&1
    rc=$?
    note "train $label ($config${*:+ $*}): rc=$rc in $(elapsed "$t") s; \
$(grep -o '"test_neg_elbo":[0-9.]*' "$dir/metrics.jsonl" | tail -1); \
$(grep '"type":"epoch"' "$dir/metrics.jsonl" | tail -1 | grep -o '"valid_neg_elbo":[0-9.]*'); \
epoch_s $(grep -o '"epoch_s":[0-9.]*' "$dir/metrics.jsonl" | cut -d: -f2 | sort -n |
        awk '{ v[NR] = $1 } END { if (NR) printf "median %s min %s", v[int((NR + 1) / 2)], v[1] }')"
    t=$(date +%s.%N)
    timeout 120 "$bin" eval "$dir/model.safetensors" --data-dir "$data" --device cuda \
        --samples 5000 --json "$out/eval-$label.json" >"$out/eval-$label.log" 2>&1
    rc=$?
    note "eval $label, K=5000, 10000 test images: rc=$rc in $(elapsed "$t") s; \
$(tr -d '\n ' <"$out/eval-$label.json" 2>/dev/null | head -c 400)"
}
if want train && [ ${#data_args[@]} -gt 0 ]; then
    train_and_bound 10-epochs configs/fashion_mnist.ini /tmp/cuvae_fm10 150
    # The speed issue's evaluation target: the same checkpoint's K = 5000 bound of the full test
    # set by cuvae in tf32 and by the PyTorch peer (torch.randn noise on the device, 65536 rows
    # at once as cuvae) in fp32 and tf32.
    t=$(date +%s.%N)
    timeout 120 "$bin" eval /tmp/cuvae_fm10/model.safetensors --data-dir "$data" --device cuda \
        --samples 5000 --precision tf32 --json "$out/eval-10-epochs-tf32.json" \
        >"$out/eval-10-epochs-tf32.log" 2>&1
    note "eval 10-epochs tf32, K=5000: rc=$? in $(elapsed "$t") s; \
$(grep -oE '"(neg_iw_bound|seconds)":[0-9.]*' "$out/eval-10-epochs-tf32.json" | tr '\n' ' ')"
    for p in fp32 tf32; do
        timeout 200 "$py" bench/peers/torch_vae.py --checkpoint /tmp/cuvae_fm10/model.safetensors \
            --test-images "$data/t10k-images-idx3-ubyte.gz" --eval-samples 5000 --noise torch \
            --eval-rows 65536 --device cuda --precision $p --json "$out/torch-eval-$p.json" \
            >"$out/torch-eval-$p.log" 2>&1
        note "PyTorch eval of the same checkpoint, $p, K=5000: rc=$? \
$(grep -oE '"(neg_iw_bound|seconds|batch)": [0-9.]*' "$out/torch-eval-$p.json" | tr '\n' ' ')"
    done
    # The CUDA issue's epoch-time criterion: whole epochs (training + validation) of cuvae and of
    # PyTorch eager on the same GPU, data resident, TF32 on both; and their 10-epoch test ELBOs.
    timeout 150 "$py" bench/run_peers.py configs/fashion_mnist.ini "${data_args[@]}" \
        --cuvae "$bin" --device cuda --precision tf32 --epoch 10 --json "$out/epochs-peers.json" \
        >"$out/epochs-peers.log" 2>&1
    note "run_peers --epoch 10 (cuvae vs PyTorch eager, tf32): rc=$? \
$(grep -E '^ +(1|10) |test negative ELBO' "$out/epochs-peers.log" | tr -s ' ' | tr '\n' ';')"
fi

# --- the rest of the suite (host and CLI tests; the CLI tests pick the GPU with --device auto) --
if want all; then
    (cd build-gpu && timeout 240 ctest -LE gpu -j8 --output-on-failure) >"$out/ctest-all.log" 2>&1
    note "ctest -LE gpu (host + cli): \
$(grep -E 'tests passed|tests failed' "$out/ctest-all.log" | tail -1)"
    grep -E 'FAIL|Failed' "$out/ctest-all.log" | head -10
fi

# --- 5. peers -------------------------------------------------------------------------------------
if want bench; then
    for g in 0 1; do
        timeout 60 "$bin" bench configs/fashion_mnist.ini "${data_args[@]}" train.cuda_graph=$g \
            --device cuda \
            --batch 128 --precision tf32 --steps 200 --eval-samples 0 >"$out/bench-graph$g.log" 2>&1
        note "cuvae bench batch 128 tf32, train.cuda_graph=$g: rc=$? \
$(grep -E '^ +128 ' "$out/bench-graph$g.log" | tr -s ' ')"
    done
    timeout 200 "$py" bench/run_peers.py configs/fashion_mnist.ini "${data_args[@]}" train.cuda_graph=1 \
        --cuvae "$bin" --device cuda --batch 128,4096 --precision tf32 \
        --peers torch-eager,torch-graph,jax --steps 100 --repeats 5 --json "$out/peers.json" \
        >"$out/peers.log" 2>&1
    note "run_peers rc=$?"
    tail -8 "$out/peers.log"
    # The GEMM-bound regime: the large config's step against its GEMMs alone through cuBLAS.
    timeout 90 "$bin" bench configs/large.ini "${data_args[@]}" train.cuda_graph=1 --device cuda \
        --batch 4096 --precision bf16,tf32 --steps 20 --warmup 5 --repeats 3 --eval-samples 0 \
        >"$out/bench-large.log" 2>&1
    note "cuvae bench large, batch 4096: rc=$? \
$(grep -E '^ +4096 ' "$out/bench-large.log" | tr -s ' ' | tr '\n' ';')"
    for p in bf16 tf32; do
        timeout 60 "$py" bench/peers/gemm_ceiling.py configs/large.ini --x-dim 784 --batch 4096 \
            --precision $p --json "$out/gemm-ceiling-$p.json" >/dev/null 2>"$out/gemm-ceiling-$p.log"
        note "GEMM ceiling $p (cuBLAS via torch, same products): rc=$? \
$(grep -o '"tflops": [0-9.]*' "$out/gemm-ceiling-$p.json" 2>/dev/null) TFLOP/s"
    done
fi

# --- 6. time to quality --------------------------------------------------------------------------
if want quality && [ ${#data_args[@]} -gt 0 ]; then
    train_and_bound long configs/fashion_mnist_long.ini /tmp/cuvae_long 300 train.cuda_graph=1
fi

echo "=== summary ($(($(date +%s) - t0)) s)"
printf '%s\n' "${summary[@]}"
if [ -n "${OUT:-}" ]; then tar czf "$OUT/logs.tgz" -C "$out" . 2>/dev/null; fi
