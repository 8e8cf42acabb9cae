# syntax=docker/dockerfile:1
# The GPU image, at the repository root where RunPod Hub looks for it (beside handler.py and
# README.md). Its instructions are Dockerfile.cuda's, one for one (tests/test_packaging.py keeps them
# the same); Dockerfile.cuda explains each of them. Dockerfile.cuda and Dockerfile.cpu remain for
# building by name.
FROM python:3.11-slim

# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    RUNPOD_LOG_LEVEL=INFO \
    NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility

WORKDIR /app

COPY requirements/torch.txt requirements/runtime.txt requirements/
RUN pip install --no-cache-dir -r requirements/torch.txt -r requirements/runtime.txt \
    && pip check \
    && python -c "import torch, torchvision; assert torch.version.cuda, 'expected a CUDA build of torch'; print('torch', torch.__version__, 'CUDA', torch.version.cuda, 'torchvision', torchvision.__version__)"

COPY . .
RUN pip install --no-cache-dir --no-deps . \
    && useradd --create-home --uid 1000 --user-group worker

USER 1000:1000

CMD ["python", "-u", "-m", "gpu_worker"]
