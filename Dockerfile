# citypatrol: one image for every role (worker, casekeeper, serve, dispatch run, run, …).
#
#   docker build -t citypatrol .
#   docker run --rm -v /srv/citypatrol-assets:/assets:ro citypatrol models list
#
# No weights or footage are baked in: mount the asset mirror (models/, videos/ … as in the
# mirror's MANIFEST.md) at /assets; the resolver finds them through CITYPATROL_ASSET_MIRROR.
# Secrets come from the environment at run time (see docker-compose.yml), never from the image.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# ffmpeg from Debian (tools; PyAV bundles its own libraries), the GL/GLib libraries OpenCV's
# full build needs (ultralytics pulls it in beside the headless one), a font that draws Chinese
# for evidence labels and reports, curl for health checks.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ffmpeg libgl1 libglib2.0-0 fonts-wqy-microhei fontconfig curl \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/citypatrol
COPY pyproject.toml README.md ./
COPY streams/ streams/
COPY models/ models/
COPY pipeline/ pipeline/
COPY annotate/ annotate/
COPY api/ api/
COPY configs/ configs/

# The project's pins (pyproject.toml: torch==2.14.1, torchvision==0.29.1, …). TORCH_INDEX_URL
# may name a PyTorch wheel index (e.g. https://download.pytorch.org/whl/cpu for a smaller
# CPU-only image); by default the wheels come from PyPI.
ARG TORCH_INDEX_URL=""
RUN pip install --upgrade pip wheel \
 && if [ -n "$TORCH_INDEX_URL" ]; then pip install --extra-index-url "$TORCH_INDEX_URL" . ; else pip install . ; fi \
 && citypatrol --help >/dev/null

RUN useradd --system --uid 10001 --home-dir /data --create-home citypatrol \
 && mkdir -p /data/evidence /assets \
 && chown -R citypatrol /data

ENV CITYPATROL_ASSET_MIRROR=/assets \
    CITYPATROL_CACHE=/data/cache \
    YOLO_CONFIG_DIR=/data/ultralytics \
    YOLO_OFFLINE=1 \
    HOME=/data

USER citypatrol
WORKDIR /data
VOLUME ["/data"]
EXPOSE 8080 9108

ENTRYPOINT ["citypatrol"]
CMD ["--help"]
