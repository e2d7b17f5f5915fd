# mgen on a consumer NVIDIA GPU. Build: docker build -t mgen .
# Run:   docker run --gpus all -v mgen-models:/models -v "$PWD/out:/workspace" mgen test-suite
# CUDA 12.4 runtime: supports Turing to Ada/Blackwell consumer cards (RTX 20xx-50xx) with driver >= 550.
FROM pytorch/pytorch:2.5.1-cuda12.4-cudnn9-runtime

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    HF_HOME=/models/hf \
    MGEN_CACHE_DIR=/models/mgen

# libsndfile for soundfile (WAV/FLAC/OGG writing)
RUN apt-get update \
    && apt-get install -y --no-install-recommends libsndfile1=1.* \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/mgen
COPY pyproject.toml README.md manifest.json ./
COPY musicgen_cli ./musicgen_cli
COPY scripts ./scripts
# Same install line as the README (torch comes with the CUDA base image).
RUN pip install -e .

RUN useradd --create-home --uid 1000 mgen \
    && mkdir -p /models /workspace \
    && chown mgen:mgen /models /workspace
USER 1000:1000

VOLUME ["/models", "/workspace"]
WORKDIR /workspace
ENTRYPOINT ["mgen"]
CMD ["--help"]
