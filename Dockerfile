# syntax=docker/dockerfile:1
# The GPU image, at the repository root where RunPod Hub looks for it (with handler.py and
# README.md). Its instructions are Dockerfile.cuda's, line for line (tests/test_packaging.py checks
# that they stay the same); Dockerfile.cuda and Dockerfile.cpu remain for building by name.
#
# Base: python:3.11-slim, not nvidia/cuda:*. The torch==2.14.1 / torchvision==0.29.1 wheels on PyPI
# are the CUDA 13.0 builds (+cu130): torch pulls the CUDA runtime, cuBLAS, cuDNN, NCCL, ... as pip
# packages (cuda-toolkit==13.0.3, nvidia-cudnn-cu13) and torchvision bundles its own libnvjpeg and
# libcudart. An nvidia/cuda base would add a second, unused copy of those libraries (gigabytes) and
# a second CUDA version to keep in step. All the host must supply is the NVIDIA driver (CUDA 13.0
# needs driver >= 580), mounted by the NVIDIA container runtime; see allowedCudaVersions in
# .runpod/hub.json. Pillow, kornia_rs and torchvision wheels bundle their codecs; the one apt
# package is a C compiler for Triton (below).
FROM python:3.11-slim

# torch.compile on CUDA (CUDA_COMPILE=1, the resize passes) runs Triton, which builds a small C
# launcher with the system compiler on first use. Without gcc the worker logs a warning and runs
# the eager passes, 3-4x slower.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    RUNPOD_LOG_LEVEL=INFO \
    GPU_WORKER_CONFIG=/app/configs/worker.yaml \
    NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility

WORKDIR /app

# The same pinned files `make setup` installs (via requirements/dev.txt), resolved together from
# PyPI, whose torch==2.14.1 is the CUDA 13.0 build. Copied alone so that this layer is rebuilt only
# when a pin changes. The build fails if a CPU-only torch slipped in.
COPY requirements/torch.txt requirements/runtime.txt requirements/
RUN pip install --no-cache-dir -r requirements/torch.txt -r requirements/runtime.txt \
    && pip check \
    && python -c "import torch, torchvision; assert torch.version.cuda, 'expected a CUDA build of torch'; print('torch', torch.__version__, 'CUDA', torch.version.cuda, 'torchvision', torchvision.__version__)"

# The project itself; its dependencies are the pins above (.dockerignore keeps .venv, tests, ... out).
COPY . .
RUN pip install --no-cache-dir --no-deps . \
    && useradd --create-home --uid 1000 --user-group worker

# Nothing here needs root. Numeric ids (hadolint DL3066): they resolve without /etc/passwd;
# the user's home directory holds torch's and triton's caches.
USER 1000:1000

CMD ["python", "-u", "-m", "gpu_worker"]
