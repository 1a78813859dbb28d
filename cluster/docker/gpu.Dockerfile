# GPU image for the tracking replicas: pose-pipeline + upstream PHALP + HMR2.0 (4D-Humans).
#
#   docker build -f cluster/docker/gpu.Dockerfile -t pose-pipeline-gpu .
#   # bake the freely downloadable weights in (about 6 GB) and, optionally, your SMPL model:
#   DOCKER_BUILDKIT=1 docker build -f cluster/docker/gpu.Dockerfile --build-arg BAKE_WEIGHTS=1 \
#       --secret id=smpl,src=/path/to/SMPL_NEUTRAL.pkl -t pose-pipeline-gpu .
#
# Upstream packages are installed at pinned commits (the snapshots the engine was written
# against); bump them together and re-run bench/gpu_smoke.py. See cluster/docker/gpu.README.md.
ARG CUDA_IMAGE=nvidia/cuda:12.4.1-cudnn-devel-ubuntu22.04
FROM ${CUDA_IMAGE}

ARG PYTHON=3.11
ARG TORCH_VERSION=2.5.1
ARG TORCHVISION_VERSION=0.20.1
ARG TORCH_INDEX=https://download.pytorch.org/whl/cu124
ARG PHALP_COMMIT=96f7e6c09fb858ec3f597d59246c151ab4394bc3
ARG HUMANS4D_COMMIT=6ec79656a23c33237c724742ca2a0ec00b398b53
ARG DETECTRON2_COMMIT=02b5c4e295e990042a714712c21dc79b731e8833
# shubham-goel/NMR (neural_renderer). The same four commits are pinned in .ci/build-upstream
# and the `phalp` extra of pyproject.toml (tests/test_phalp_pins.py checks they agree).
ARG NMR_COMMIT=e990b3c70f48d39231f607c79d76ce3db4bf7483
ARG CHUMPY_REF=master
# GPU architectures the CUDA extensions are compiled for (A100, A10/L4, H100).
ARG TORCH_CUDA_ARCH_LIST="8.0;8.6;8.9;9.0"
ARG BAKE_WEIGHTS=0

ENV DEBIAN_FRONTEND=noninteractive PIP_NO_CACHE_DIR=1 PYTHONUNBUFFERED=1 \
    FORCE_CUDA=1 TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST} \
    FVCORE_CACHE=/opt/weights/iopath_cache \
    POSE_PIPELINE_ENGINE__NAME=phalp \
    POSE_PIPELINE_ENGINE__OPTIONS="{weights_dir: /opt/weights, detector_cache: /opt/weights/iopath_cache}"

# No EGL/OpenGL libraries: the engine never renders (upstream's renderers are stubbed out).
RUN apt-get update && apt-get install -y --no-install-recommends \
        software-properties-common git build-essential ninja-build ca-certificates curl ffmpeg \
    && add-apt-repository -y ppa:deadsnakes/ppa && apt-get update \
    && apt-get install -y --no-install-recommends python${PYTHON} python${PYTHON}-dev python${PYTHON}-venv \
    && rm -rf /var/lib/apt/lists/*
RUN python${PYTHON} -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

# setuptools < 81 still ships pkg_resources, which detectron2's model_zoo imports.
RUN pip install --upgrade pip "setuptools<81" wheel \
    && pip install torch==${TORCH_VERSION} torchvision==${TORCHVISION_VERSION} --index-url ${TORCH_INDEX}

# Compiled upstream dependencies, against the torch above (no build isolation).
RUN pip install --no-build-isolation "git+https://github.com/facebookresearch/detectron2.git@${DETECTRON2_COMMIT}" \
    && pip install --no-build-isolation "git+https://github.com/shubham-goel/NMR.git@${NMR_COMMIT}" \
    && pip install "chumpy @ git+https://github.com/mattloper/chumpy@${CHUMPY_REF}"

# phalp and hmr2 from git at pinned commits. --no-deps: their setup.py pulls unpinned git
# copies of detectron2/pyopengl/pytube; the runtime dependencies are listed here instead.
# OpenCV headless only (the GUI build links libGL): scenedetect, which requires opencv-python,
# goes in with --no-deps. (.ci/upstream-constraints.txt has the versions CI tests on CPU.)
RUN pip install smplx==0.1.28 pytorch-lightning yacs timm einops dill rich scikit-learn scikit-image \
        opencv-python-headless joblib pycocotools pytube webdataset braceexpand pandas \
        fvcore iopath omegaconf hydra-core click platformdirs tqdm \
    && pip install --no-deps scenedetect==0.7.2 \
    && pip install --no-deps "phalp @ git+https://github.com/brjathu/PHALP.git@${PHALP_COMMIT}" \
                             "hmr2 @ git+https://github.com/shubham-goel/4D-Humans.git@${HUMANS4D_COMMIT}"

WORKDIR /app
COPY pyproject.toml README.md ./
COPY pose_pipeline ./pose_pipeline
COPY deployments ./deployments
COPY serve_config.yaml ./
RUN pip install -e ".[postgres]" && python -c "import pose_pipeline.engines.phalp, psycopg"

# Optional: weights baked in at build time (never at request time). The SMPL model is
# licence-restricted: pass your own copy as a BuildKit secret named "smpl", or mount it.
RUN --mount=type=secret,id=smpl,required=false \
    if [ "$BAKE_WEIGHTS" = "1" ]; then \
        pose-pipeline models fetch --engine phalp --weights-dir /opt/weights --detector-cache /opt/weights/iopath_cache || true; \
        if [ -f /run/secrets/smpl ]; then install -D -m 0644 /run/secrets/smpl /opt/weights/phalp/3D/models/smpl/SMPL_NEUTRAL.pkl; fi; \
        pose-pipeline models check --engine phalp --weights-dir /opt/weights --detector-cache /opt/weights/iopath_cache || true; \
    fi

# Import check without a GPU: the engine package, upstream and its stubs load headless.
RUN python -c "from pose_pipeline.engines.phalp.upstream import import_upstream; import_upstream(); print('upstream ok')"

ENTRYPOINT ["pose-pipeline"]
