# mgen on a consumer NVIDIA GPU: GeForce RTX 20xx (Turing) to RTX 50xx (Blackwell), host driver >= 570.
# PyTorch 2.7.1 built for CUDA 12.8, the first CUDA with RTX 50xx (sm_120) kernels; transformers 5
# needs torch >= 2.6. tests/test_docker.py checks the tag against pyproject.toml and transformers.
# Build and run: see README.md, "Docker".
FROM pytorch/pytorch:2.7.1-cuda12.8-cudnn9-runtime@sha256:c16f4c749e2d9e96878875cdf6cc45cddda1d1a36fddd371dd6f2360f1b6e2a2

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HF_HOME=/models/hf \
    MGEN_CACHE_DIR=/models/mgen

# libsndfile for soundfile (WAV/FLAC/OGG writing)
RUN apt-get update \
    && apt-get install -y --no-install-recommends libsndfile1=1.* \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/mgen
# The pinned dependencies (scripts/lock.py) in their own layer; --no-deps leaves the base
# image's torch and its CUDA libraries exactly as they are.
COPY requirements.lock ./
RUN pip install --no-deps -r requirements.lock
COPY pyproject.toml setup.py MANIFEST.in manifest.json README.md ./
COPY musicgen_cli ./musicgen_cli
# Fail the build, not the first model load, if transformers cannot use this torch.
RUN pip install --no-deps . \
    && python -c "from transformers.utils import is_torch_available as ok; assert ok(), 'transformers rejects this torch'"

COPY docker/entrypoint.sh /usr/local/bin/mgen-entrypoint
RUN mkdir -p /models /workspace \
    && chown 1000:1000 /models /workspace

VOLUME ["/models", "/workspace"]
WORKDIR /workspace
# Starts as root only to hand mgen to the owner of /workspace (docker/entrypoint.sh).
ENTRYPOINT ["mgen-entrypoint"]
CMD ["--help"]
