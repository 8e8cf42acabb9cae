#!/usr/bin/env bash
# The checks to run on a borrowed GPU machine, each stage under its own time limit:
#
#   bash benchmarks/gpu_session.sh [STAGE ...]     (default: install info cuda-tests compare profile chunks
#                                                   coldstart bench rest)
#
#   install     the wheels carried in .whl/ into /tmp/site (below)
#   info        the GPU, driver and library versions
#   cuda-tests  every CUDA test (pytest -m cuda): kernels, codecs, pipeline, handler, GPU faults
#   compare     CUDA output against CPU output on the reference job, stage by stage
#   profile     the reference operations on CUDA step by step, eager against torch.compile
#   chunks      the 64-image reference job at CHUNK_IMAGES 0, 8, 16, 32 (decode overlapping the rest)
#   coldstart   a fresh worker's time to take jobs and its first jobs, CUDA_COMPILE 0, 1 and 2
#   bench       benchmarks.run on CUDA next to the CPU peers (BENCH_ARGS, default: --device auto)
#   vary        48 single-image jobs at MAX_CONCURRENCY 32 through the loop on CUDA, the same operations for
#               all and then each job its own brightness/contrast (--vary-params): jobs/s and images
#               per kernel call (max/mean stacked) with per-sample stacking (not in the default list)
#   rest        the rest of the suite on this machine's torch (torch 2.11 there, 2.14 in our pins)
#
# On the H100 machine of 2026-11-22 (10-minute calls): "install info cuda-tests compare profile"
# took about 2.5 minutes and "rest" 4; "install chunks coldstart" (added later) should take about
# 4. "bench" with --device cuda needed about 8 minutes with two CUDA peers (each CUDA child process
# spent about 30 s starting); with three, split it over two calls of their own, e.g.
#   BENCH_S=560 BENCH_TAG=-small BENCH_ARGS="--device cuda --sizes 1,16" bash benchmarks/gpu_session.sh "install bench"
#   BENCH_S=560 BENCH_TAG=-large BENCH_ARGS="--device cuda --sizes 64,256" bash benchmarks/gpu_session.sh "install bench"
# A bench stopped by its limit still writes its tables, marked "CUT SHORT", with the rows it has.
#
# The wheels: that machine has Python 3.12 with torch and torchvision but not the rest of our
# requirements, and cannot download. Here, fetch them for cp312 (x86-64 manylinux), keep those it
# lacks plus our Pillow pin (not torch, triton, nvidia-*, numpy), and build pyvips' pure-Python
# wheel (kornia comes from requirements/dev.txt: the Pipeline's custom-step tests, which run in
# cuda-tests, import it; the worker does not); .whl/ is git-ignored and travels with the call
# (64 MiB at most: moto is left out):
#   grep -hv '^\s*#\|^-r\|^torch\|^$\|pyvips==\|hadolint\|moto' requirements/runtime.txt \
#       requirements/dev.txt > /tmp/reqs312.txt
#   .venv/bin/python -m pip download -d /tmp/whl --only-binary=:all: --python-version 3.12 \
#       --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
#       --platform manylinux2014_x86_64 -r /tmp/reqs312.txt     (add other manylinux tags if asked)
#   .venv/bin/python -m pip wheel --no-deps --no-build-isolation pyvips==3.2.0 -w .whl
#
# Logs and results go under $OUT (default out/gpu): <stage>.log and bench$BENCH_TAG/latest.{json,md}.
set -u
OUT=${OUT:-out/gpu}
PY=${PY:-python3}
mkdir -p "$OUT"
export PYTHONPATH="/tmp/site:$PWD" PYTHONUNBUFFERED=1
# moto (the S3 server of tests/test_upload.py) and the hadolint binary are not carried.
NOT_CARRIED=(--ignore tests/test_upload.py --deselect tests/test_packaging.py::test_hadolint_has_no_findings)

stage() {  # stage NAME SECONDS COMMAND...: run with a time limit, log to $OUT/NAME.log
    local name=$1 limit=$2
    shift 2
    echo "=== $name (limit ${limit}s) $(date -u +%T)"
    timeout -k 5 "$limit" "$@" >"$OUT/$name.log" 2>&1
    echo "=== $name rc=$? $(date -u +%T)"
    tail -n 25 "$OUT/$name.log"
}

for step in "${@:-install info cuda-tests compare profile chunks coldstart bench rest}"; do
    for s in $step; do
        case $s in
            install) stage install 120 "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
                         --upgrade --target /tmp/site .whl/*.whl ;;
            info) stage info 60 bash -c "nvidia-smi; $PY -c 'import torch, torchvision, kornia, PIL, runpod, numpy, pyvips;
print(torch.__version__, torch.version.cuda, torchvision.__version__, kornia.__version__, PIL.__version__,
      runpod.__version__, numpy.__version__, pyvips.version(0), pyvips.version(1), torch.cuda.get_device_name(0))
import warnings; from kernels import resize_cpu; warnings.simplefilter(\"error\"); warnings.simplefilter(\"ignore\", FutureWarning)
try: torch.jit.script(resize_cpu._width_chunks); print(\"TorchScript compiles the chunk loops\")
except Exception as e: print(\"TorchScript fails:\", type(e).__name__, e)'" ;;
            cuda-tests) stage cuda-tests "${CUDA_TESTS_S:-240}" "$PY" -m pytest -m cuda --timeout 120 "${NOT_CARRIED[@]}" ;;
            compare) stage compare "${COMPARE_S:-120}" "$PY" -m benchmarks.cuda_vs_cpu ;;
            profile) stage profile "${PROFILE_S:-120}" "$PY" -m benchmarks.cuda_profile ;;
            chunks) stage chunks "${CHUNKS_S:-150}" "$PY" -m benchmarks.chunks --device cuda ;;
            coldstart) stage coldstart "${COLDSTART_S:-200}" "$PY" -m benchmarks.cold_start --device cuda ;;
            bench) stage "bench${BENCH_TAG:-}" "${BENCH_S:-560}" "$PY" -m benchmarks.run ${BENCH_ARGS:---device auto} \
                       --out "$OUT/bench${BENCH_TAG:-}" ;;
            vary) stage vary "${VARY_S:-400}" bash -c "$PY -m benchmarks.concurrency --device cuda --concurrency 32 \
                      --repeats 2 --out $OUT/concurrency-same.json && $PY -m benchmarks.concurrency --device cuda \
                      --concurrency 32 --repeats 2 --vary-params --out $OUT/concurrency-vary-params.json" ;;
            rest) stage rest "${REST_S:-300}" "$PY" -m pytest -v -m "not cuda" --timeout 120 "${NOT_CARRIED[@]}" ;;
            *) echo "unknown stage $s" >&2; exit 2 ;;
        esac
    done
done
