#!/usr/bin/env bash
# The CUDA backend's check on a GPU, as two prepared commands that fit the GPU time there is
# (15 minutes a session, the machine's start included; at most 10 minutes a command):
#   bash bench/device_check.sh 1   (at most 8 minutes)
#     build (Release; without -Werror, reporting the warnings, when a newer compiler warns);
#     the gpu-labelled tests, each with a timeout (a skipped gpu test on a GPU fails the step;
#     gpu_epilogues' fused/refused counts are quoted; gpu_stream's verdict, streamed against
#     whole-upload training bit for bit, is quoted); ten epochs of the default config and the
#     K = 5000 bound of the full test set; run_peers --epoch 10 (cuvae against PyTorch eager)
#     with the step graph off and on; compute-sanitizer memcheck on a short run with the step
#     graph on and on a short eval, racecheck on a short run; before those, memcheck on a short
#     conv run (bf16, step graph on); which cuDNN the build found (the toolkit's, or the
#     PyTorch wheel's library with the carried headers).
#   bash bench/device_check.sh 2   (at most 4 minutes)
#     build (a no-op on a machine still warm from command 1); the peers at batch 128 and 4096;
#     the 64x64 conv VAE against PyTorch eager and torch.compile at batch 128 and 1024; the
#     large config in bf16 and tf32 against its GEMMs alone; time to quality (the long config
#     with the step graph, then its K = 5000 bound, and the PyTorch peer's bound of the same
#     checkpoint).
# Every step's timeout is capped so that none runs past the command's deadline; a step that
# would start with under 10 s left is not started (and says so). Prepare here first with
# bench/device_prepare.sh and carry `.device`. The summary goes line by line to $OUT/summary.txt
# (a call cut short still returns what was done), with the logs as $OUT/logs.tgz; it is also the
# last lines printed, and the exit status is 1 when a step failed, was not started, or the data
# are missing. Run command 2 straight after command 1, on the machine still warm.
#   CUVAE_DEVICE_LIMIT=S   the command's limit in seconds (default 470 for 1, 230 for 2)
#   CUVAE_DEVICE_DRY=1     print each step with its capped timeout, charge the step its whole
#                          timeout on a simulated clock, run nothing (checks the budget here)
#   CUVAE_DEVICE_ARCHS=90-real   the architectures built (default: the device's, from nvidia-smi)
#   CUVAE_DEVICE_PREFIX=1  use the carried packages even where the image has the dependencies
#   CUVAE_DEVICE_ASSUME_GPU=1   run the GPU steps where nvidia-smi lists no GPU (to test this
#                          script on a CPU machine: every GPU step must then report a failure)
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
cmd=${1:-}
case $cmd in
    1) limit=${CUVAE_DEVICE_LIMIT:-470} build_limit=150 ;;
    2) limit=${CUVAE_DEVICE_LIMIT:-230} build_limit=100 ;;
    *) echo "usage: bash bench/device_check.sh 1|2" >&2; exit 2 ;;
esac
dry=${CUVAE_DEVICE_DRY:-}
out=$root/.device/out$cmd
rm -rf "$out" && mkdir -p "$out"
[ -n "${OUT:-}" ] && : >"$OUT/summary.txt"
data=$root/.device/data/fashion-mnist
t0=$(date +%s)
simulated=0 # seconds the dry run has charged
failed=0
now() { echo $(($(date +%s) + simulated)); }
deadline=$((t0 + limit))
say() { echo "[$(($(now) - t0))s] $*"; }
note() {
    say "$*"
    echo "$*" >>"$out/summary.txt"
    if [ -n "${OUT:-}" ]; then
        echo "$*" >>"$OUT/summary.txt"
        tar czf "$OUT/logs.tgz" -C "$out" . 2>/dev/null
    fi
}
fail_note() {
    failed=1
    note "$*"
}
# verdict RC LOG: "rc=0", or "rc=N, FAILED (last line of LOG)" (the dry run: "rc=0").
verdict() {
    if [ -n "$dry" ] || [ "$1" -eq 0 ]; then
        echo "rc=$1"
    else
        echo "rc=$1, FAILED ($(grep -v '^ *$' "$2" 2>/dev/null | tail -1 | cut -c1-300))"
    fi
}
elapsed() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f", b - a }'; }
# cap WANT: the timeout a step may have, WANT or what is left before the deadline (5 s kept for
# the archive); prints nothing and fails when under 10 s are left.
cap() {
    local left=$((deadline - $(now) - 5))
    [ "$left" -ge 10 ] || return 1
    [ "$1" -lt "$left" ] && echo "$1" || echo "$left"
}
# run LIMIT LOG CMD...: runs CMD under `timeout` capped by the deadline, stdout and stderr to
# LOG; returns its status (124: timed out; 125: not started, past the deadline).
run() {
    local want=$1 log=$2 t
    shift 2
    if ! t=$(cap "$want"); then
        note "not started, past the deadline: ${*:1:3}"
        return 125
    fi
    if [ -n "$dry" ]; then
        say "dry: timeout $t $*"
        simulated=$((simulated + t))
        return 0
    fi
    timeout "$t" "$@" >"$log" 2>&1
}

on_gpu=0
if nvidia-smi -L >"$out/nvidia-smi.txt" 2>&1 && grep -q '^GPU ' "$out/nvidia-smi.txt"; then
    on_gpu=1
fi
# Testing this script where there is no GPU: run the GPU steps anyway (they fail, and say so).
[ -n "${CUVAE_DEVICE_ASSUME_GPU:-}" ] && on_gpu=1
gpu_line=$(grep -m1 '^GPU ' "$out/nvidia-smi.txt")
[ -z "$gpu_line" ] && [ $on_gpu = 1 ] && gpu_line="no GPU listed, assumed (CUVAE_DEVICE_ASSUME_GPU)"
note "command $cmd, limit ${limit} s: ${gpu_line:-no GPU (nvidia-smi lists none)}; \
driver $(nvidia-smi --query-gpu=driver_version --format=csv,noheader 2>/dev/null | head -1); \
$(nvcc --version 2>/dev/null | tail -1 || echo 'nvcc not on PATH')"

# The peers' Python: the first that imports torch and numpy (the device image's python3 does).
py=python3
for cand in python3 /usr/bin/python3; do
    if command -v "$cand" >/dev/null && "$cand" -c 'import numpy, torch' 2>/dev/null; then
        py=$cand
        break
    fi
done

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
# A dry run charges every step whether or not the data are here.
if [ -f "$data/train-images-idx3-ubyte.gz" ] || [ -n "$dry" ]; then
    data_args=(data.train_images="$data/train-images-idx3-ubyte.gz"
        data.train_labels="$data/train-labels-idx1-ubyte.gz"
        data.test_images="$data/t10k-images-idx3-ubyte.gz"
        data.test_labels="$data/t10k-labels-idx1-ubyte.gz")
else
    # Without the data no training, evaluation or benchmark step runs: that is no pass.
    fail_note "data: FAILED: no .device/data/fashion-mnist (run bench/device_prepare.sh here and \
carry .device): no training, evaluation or benchmark step can run"
fi

# --- cuDNN (the conv layers, issue 14) ------------------------------------------------------------
# The toolkit's, where the image has it; else the PyTorch wheel's libcudnn (nvidia.cudnn), with
# the wheel's headers or those device_prepare.sh carried in .device/cudnn/include.
cudnn_args=()
cudnn_where="the CUDA toolkit"
if ! { [ -f /usr/local/cuda/include/cudnn.h ] && ls /usr/local/cuda/lib64/libcudnn.so* >/dev/null 2>&1; }; then
    wheel=$("$py" -c 'import nvidia.cudnn as m; print(list(m.__path__)[0])' 2>/dev/null)
    headers=
    [ -n "$wheel" ] && [ -f "$wheel/include/cudnn.h" ] && headers=$wheel/include
    [ -z "$headers" ] && [ -f "$root/.device/cudnn/include/cudnn.h" ] && headers=$root/.device/cudnn/include
    if [ -n "$wheel" ] && ls "$wheel"/lib/libcudnn.so* >/dev/null 2>&1 && [ -n "$headers" ]; then
        rm -rf /tmp/cuvae-cudnn && mkdir -p /tmp/cuvae-cudnn
        ln -s "$headers" /tmp/cuvae-cudnn/include
        ln -s "$wheel/lib" /tmp/cuvae-cudnn/lib
        cudnn_args=(-DCUVAE_CUDNN_ROOT=/tmp/cuvae-cudnn)
        export LD_LIBRARY_PATH=$wheel/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
        cudnn_where="the PyTorch wheel's $(ls "$wheel"/lib/libcudnn.so.* | head -1), headers $headers"
    else
        cudnn_where="none found (toolkit, wheel ${wheel:-absent}, carried headers)"
    fi
fi

# --- build --------------------------------------------------------------------------------------
# Ninja where make is missing; the device's own architecture (one is enough to check, and builds
# in a third of the time of the default four); -Werror first, and without it, reporting the
# warnings, when the image's newer compiler warns where CI's does not.
bin=build-gpu/cuvae
gpu_ok=0
archs=${CUVAE_DEVICE_ARCHS:-}
if [ -z "$archs" ] && [ $on_gpu = 1 ]; then
    cc=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -1 | tr -d '. ')
    [ -n "$cc" ] && archs="${cc}-real"
fi
gen=()
if ! command -v make >/dev/null && command -v ninja >/dev/null; then
    [ -f build-gpu/CMakeCache.txt ] && ! grep -q 'CMAKE_GENERATOR:INTERNAL=Ninja' \
        build-gpu/CMakeCache.txt && rm -rf build-gpu
    gen=(-G Ninja)
fi
# build_with WERROR LOG: configures and builds build-gpu.
build_with() {
    run "$build_limit" "$2" bash -c 'cmake -S . -B build-gpu "$@" && cmake --build build-gpu -j"$(nproc)"' _ \
        "${gen[@]}" -DCMAKE_BUILD_TYPE=Release -DCUVAE_WERROR="$1" \
        ${archs:+-DCMAKE_CUDA_ARCHITECTURES="$archs"} "${cudnn_args[@]}"
}
build_ok=0
if build_with ON "$out/build.log"; then
    build_ok=1
    note "build: ok (-Werror; ${gen[*]:-make}; CUDA architectures ${archs:-default})"
elif [ -z "$dry" ]; then
    # Whatever failed, try once without -Werror: a newer compiler's new warnings then build, and
    # are reported; any other failure fails again.
    tail -30 "$out/build.log"
    if build_with OFF "$out/build-nowerror.log"; then
        build_ok=1
        # Every object is rebuilt without -Werror (the flags changed): its log has them all.
        warnings=$(grep -hE 'warning' "$out/build-nowerror.log" | sed "s|$root/||" | sort -u)
        fail_note "build: ok only WITHOUT -Werror (CUVAE_WERROR=OFF): \
$(echo "$warnings" | grep -c .) warning lines (fix them): \
$(echo "$warnings" | head -6 | tr '\n' ' ' | cut -c1-900)"
    else
        tail -30 "$out/build-nowerror.log"
        fail_note "build: FAILED, with and without -Werror (build.log, build-nowerror.log): \
$(grep -hE 'error' "$out/build-nowerror.log" "$out/build.log" | head -3 | tr '\n' ' ' |
            cut -c1-600)"
    fi
fi
if [ $build_ok = 1 ] && [ -z "$dry" ]; then
    version=$("$bin" --version 2>&1 | paste -sd ';' -)
    if echo "$version" | grep -q 'without CUDA'; then
        fail_note "build: CPU-only (no CUDA toolkit found: $version); the GPU steps are not run"
    elif [ $on_gpu = 0 ]; then
        fail_note "build: $version; no GPU (nvidia-smi lists none): the GPU steps are not run"
    else
        note "build: $version"
        gpu_ok=1
    fi
    # Without cuDNN the conv rows only check the refusal: that is no pass of issue 14.
    if grep -hq 'cuvae: cuDNN [0-9.]*:' "$out"/build*.log; then
        note "cuDNN: $(grep -ho 'cuvae: cuDNN [0-9.]*: .*' "$out"/build*.log | tail -1) (from $cudnn_where)"
    else
        fail_note "cuDNN: FAILED: not in the build ($cudnn_where): the conv layers are not tested"
    fi
elif [ -n "$dry" ]; then
    gpu_ok=1
fi

# --- command 1 ----------------------------------------------------------------------------------
# ctest counts a skipped test as passed: count run / passed / skipped / failed from its lines.
gpu_tests() {
    run 150 "$out/ctest-gpu.log" bash -c "cd build-gpu && ctest -L gpu -V --timeout 60"
    local rc=$? log=$out/ctest-gpu.log
    [ -n "$dry" ] && return 0
    local total passed skipped failed_n
    total=$(grep -cE '^ *[0-9]+/[0-9]+ Test +#' "$log")
    passed=$(grep -cE '^ *[0-9]+/[0-9]+ Test +#.* Passed' "$log")
    skipped=$(grep -cE '^ *[0-9]+/[0-9]+ Test +#.*(Skipped|Not Run)' "$log")
    failed_n=$((total - passed - skipped))
    local line="ctest -L gpu (per-test timeout 60 s): rc=$rc, run $total, passed $passed, \
skipped $skipped, failed $failed_n"
    if [ "$rc" -ne 0 ] || [ "$total" -eq 0 ] || [ "$skipped" -gt 0 ] || [ "$failed_n" -gt 0 ]; then
        fail_note "$line: FAILED (a skipped gpu test on a GPU is a failure): \
$(grep -E '^ *[0-9]+/[0-9]+ Test +#' "$log" | grep -vE ' Passed' | tr -s ' ' | tr '\n' ';')"
    else
        note "$line: ok"
    fi
    local epi
    epi=$(grep -E '^[0-9]+: gpu_epilogues: .*fused' "$log" | sed 's/^[0-9]*: gpu_epilogues: //' |
        tr '\n' ';')
    note "fused epilogues (gpu_epilogues): ${epi:-no counts printed}"
    local streamed
    streamed=$(grep -E '^[0-9]+: gpu_stream: ' "$log" | sed 's/^[0-9]*: //' | tail -1)
    note "data.stream on vs off on the GPU (gpu_stream): ${streamed:-no verdict printed}"
}

# train_and_bound LABEL CONFIG RUN_DIR TRAIN_TIMEOUT [key=value ...]: trains CONFIG on the GPU,
# then evaluates the K = 5000 bound of the full test set; both timed, both in the summary.
train_and_bound() {
    local label=$1 config=$2 dir=$3 limit_s=$4 t rc
    shift 4
    rm -rf "$dir"
    t=$(date +%s.%N)
    run "$limit_s" "$out/train-$label.log" "$bin" train "$config" "${data_args[@]}" \
        train.device=cuda output.images=0 output.dir="$dir" "$@"
    rc=$?
    [ -n "$dry" ] || [ $rc -eq 0 ] || failed=1
    note "train $label ($config${*:+ $*}): $(verdict $rc "$out/train-$label.log") in $(elapsed "$t") s; \
$(grep -o '"test_neg_elbo":[0-9.]*' "$dir/metrics.jsonl" 2>/dev/null | tail -1); \
epoch_s $(grep -o '"epoch_s":[0-9.]*' "$dir/metrics.jsonl" 2>/dev/null | cut -d: -f2 | sort -n |
        awk '{ v[NR] = $1 } END { if (NR) printf "median %s min %s", v[int((NR + 1) / 2)], v[1] }')"
    [ $rc -eq 0 ] || return 0
    t=$(date +%s.%N)
    run 60 "$out/eval-$label.log" "$bin" eval "$dir/model.safetensors" --data-dir "$data" \
        --device cuda --samples 5000 --json "$out/eval-$label.json"
    rc=$?
    [ -n "$dry" ] || [ $rc -eq 0 ] || failed=1
    note "eval $label, K=5000, 10000 test images: $(verdict $rc "$out/eval-$label.log") in $(elapsed "$t") s; \
$(tr -d '\n ' 2>/dev/null <"$out/eval-$label.json" | head -c 400)"
}

sanitizer=$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer \
    /usr/local/cuda/compute-sanitizer/compute-sanitizer 2>/dev/null | head -1)
sanitize() { # sanitize TOOL WHAT LIMIT CMD...
    local tool=$1 what=$2 limit_s=$3 rc
    shift 3
    if [ -z "$sanitizer" ] && [ -z "$dry" ]; then
        fail_note "compute-sanitizer $tool, $what: FAILED: compute-sanitizer not found"
        return 0
    fi
    run "$limit_s" "$out/sanitize-$tool-$what.log" "${sanitizer:-compute-sanitizer}" --tool "$tool" \
        --error-exitcode 99 --print-limit 20 "$@"
    rc=$?
    [ -n "$dry" ] && return 0
    local summary
    summary=$(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' "$out/sanitize-$tool-$what.log" | tail -1)
    if [ $rc -ne 0 ] || ! echo "$summary" | grep -qE ' 0 (errors|hazards)'; then
        fail_note "compute-sanitizer $tool, $what: rc=$rc, FAILED: ${summary:-no summary}"
    else
        note "compute-sanitizer $tool, $what: ok: $summary"
    fi
}

command1() {
    gpu_tests
    [ ${#data_args[@]} -gt 0 ] || return 0
    # First of the sanitizer runs, the conv layers being the newest device code: a conv VAE's
    # steps (cuDNN forward and backward, the bias, ReLU and widening kernels of conv.cu), direct
    # and replayed from the captured graph, in bf16 (where every kernel of conv.cu runs).
    rm -rf /tmp/cuvae_conv_sanitize
    sanitize memcheck "conv train, bf16, step graph on" 60 "$bin" train configs/smoke.ini \
        "${data_args[@]}" data.limit_train=256 data.validation=64 data.limit_test=64 \
        train.epochs=1 train.batch_size=32 train.device=cuda train.precision=bf16 \
        train.cuda_graph=1 output.images=0 'model.encoder=conv 8, conv 16, linear 32' \
        output.dir=/tmp/cuvae_conv_sanitize
    train_and_bound 10-epochs configs/fashion_mnist.ini /tmp/cuvae_fm10 90
    for g in 0 1; do
        run 75 "$out/epochs-peers-graph$g.log" "$py" bench/run_peers.py configs/fashion_mnist.ini \
            "${data_args[@]}" train.cuda_graph=$g --cuvae "$bin" --device cuda --precision tf32 \
            --epoch 10 --json "$out/epochs-peers-graph$g.json"
        local rc=$?
        [ -n "$dry" ] || [ $rc -eq 0 ] || failed=1
        note "run_peers --epoch 10, train.cuda_graph=$g (cuvae vs PyTorch eager, tf32): \
$(verdict $rc "$out/epochs-peers-graph$g.log") \
$(grep -E '^ +(1|10) |test negative ELBO' "$out/epochs-peers-graph$g.log" 2>/dev/null |
            tr -s ' ' | tr '\n' ';')"
    done
    local small=(configs/smoke.ini "${data_args[@]}" data.limit_train=512 data.validation=64
        data.limit_test=64 train.epochs=1 train.batch_size=64 train.device=cuda
        train.precision=fp32 output.images=0)
    rm -rf /tmp/cuvae_sanitize /tmp/cuvae_race
    sanitize memcheck "train, step graph on" 60 "$bin" train "${small[@]}" train.cuda_graph=1 \
        output.dir=/tmp/cuvae_sanitize
    if [ -f /tmp/cuvae_sanitize/model.safetensors ] || [ -n "$dry" ]; then
        sanitize memcheck eval 45 "$bin" eval /tmp/cuvae_sanitize/model.safetensors --device cuda \
            --samples 20 --limit 64 --data-dir "$data"
    fi
    sanitize racecheck "train, step graph off" 60 "$bin" train "${small[@]}" \
        train.cuda_graph=0 data.limit_train=128 output.dir=/tmp/cuvae_race
}

command2() {
    [ ${#data_args[@]} -gt 0 ] || return 0
    local rc
    run 110 "$out/peers.log" "$py" bench/run_peers.py configs/fashion_mnist.ini \
        "${data_args[@]}" train.cuda_graph=1 --cuvae "$bin" --device cuda --batch 128,4096 \
        --precision tf32,bf16 --peers torch-eager,torch-graph,torch-compile,jax --steps 100 \
        --repeats 3 --json "$out/peers.json"
    rc=$?
    [ -n "$dry" ] || [ $rc -eq 0 ] || failed=1
    note "run_peers batch 128,4096, tf32,bf16 (step graph on): $(verdict $rc "$out/peers.log"); \
$(grep -E '^ +(128|4096) ' "$out/peers.log" 2>/dev/null | tr -s ' ' | tr '\n' ';' | cut -c1-1500)"
    # Issue 14's GPU speed target: the 64x64 conv VAE at batch 128 and 1024 against PyTorch eager
    # (cuDNN autotuned) and torch.compile. The step reads only the data's shape, so a small
    # generated set stands in for the 60 000 images.
    run 20 "$out/shapes.log" "$py" bench/make_shapes.py --out /tmp/cuvae_sh64 --n-train 2048 \
        --n-test 128 --size 64
    run 80 "$out/peers-conv.log" "$py" bench/run_peers.py configs/shapes64_conv.ini \
        data.train_images=/tmp/cuvae_sh64/train-images.npy \
        data.test_images=/tmp/cuvae_sh64/test-images.npy data.train_labels= data.test_labels= \
        --cuvae "$bin" --device cuda --batch 128,1024 --precision tf32 \
        --peers torch-eager,torch-compile --steps 20 --warmup 3 --repeats 3 \
        --json "$out/peers-conv.json"
    rc=$?
    [ -n "$dry" ] || [ $rc -eq 0 ] || failed=1
    note "run_peers shapes64_conv (64x64 conv VAE), batch 128,1024, tf32: \
$(verdict $rc "$out/peers-conv.log"); \
$(grep -E '^ +(128|1024) ' "$out/peers-conv.log" 2>/dev/null | tr -s ' ' | tr '\n' ';' | cut -c1-800)"
    # The GEMM-bound regime: the large config's step against its GEMMs alone through cuBLAS.
    run 50 "$out/bench-large.log" "$bin" bench configs/large.ini "${data_args[@]}" \
        train.cuda_graph=1 --device cuda --batch 4096 --precision bf16,tf32 --steps 20 \
        --warmup 5 --repeats 3 --eval-samples 0
    rc=$?
    [ -n "$dry" ] || [ $rc -eq 0 ] || failed=1
    note "cuvae bench large, batch 4096: $(verdict $rc "$out/bench-large.log") \
$(grep -E '^ +4096 ' "$out/bench-large.log" 2>/dev/null | tr -s ' ' | tr '\n' ';')"
    for p in bf16 tf32; do
        run 25 "$out/gemm-ceiling-$p.log" "$py" bench/peers/gemm_ceiling.py configs/large.ini \
            --x-dim 784 --batch 4096 --precision $p --json "$out/gemm-ceiling-$p.json"
        rc=$?
        [ -n "$dry" ] || [ $rc -eq 0 ] || failed=1
        note "GEMM ceiling $p (cuBLAS via torch, same products): \
$(verdict $rc "$out/gemm-ceiling-$p.log") \
$(grep -o '"tflops": [0-9.]*' "$out/gemm-ceiling-$p.json" 2>/dev/null) TFLOP/s"
    done
    train_and_bound long configs/fashion_mnist_long.ini /tmp/cuvae_long 100 train.cuda_graph=1
    if [ -f /tmp/cuvae_long/model.safetensors ] || [ -n "$dry" ]; then
        # Rows a batch as cuvae's calls take: eval.batch_size 100 x K 5000.
        run 45 "$out/torch-eval.log" "$py" bench/peers/torch_vae.py \
            --checkpoint /tmp/cuvae_long/model.safetensors \
            --test-images "$data/t10k-images-idx3-ubyte.gz" --eval-samples 5000 --noise torch \
            --eval-rows 500000 --device cuda --precision tf32 --json "$out/torch-eval.json"
        local rc=$?
        [ -n "$dry" ] || [ $rc -eq 0 ] || failed=1
        note "PyTorch eval of the same checkpoint, tf32, K=5000: $(verdict $rc "$out/torch-eval.log") \
$(grep -oE '"(neg_iw_bound|seconds|batch)": [0-9.]*' "$out/torch-eval.json" 2>/dev/null |
            tr '\n' ' ')"
    fi
}

if [ $gpu_ok = 1 ]; then
    "command$cmd"
fi

echo "=== summary of command $cmd ($(($(now) - t0)) s of $limit)"
cat "$out/summary.txt"
[ -n "${OUT:-}" ] && tar czf "$OUT/logs.tgz" -C "$out" . 2>/dev/null
[ $failed = 0 ] && [ $gpu_ok = 1 ]
