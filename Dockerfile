# htap-exporter container image.
#   docker build -t htap-exporter:0.2.0 --build-arg REVISION="$(git rev-parse HEAD)" .
# VERSION defaults to the version this checkout is (htap_exporter/__init__.py; a test keeps them equal).
# REVISION goes into the image's label and into the package (`htap-exporter --version`,
# htap_exporter_build_info): the build context has no .git to take it from.
#   docker run -p 9978:9978 -e HW_ACCESS_KEY -e HW_SECRET_KEY \
#     -v "$PWD/config.yaml:/etc/htap-exporter/config.yaml:ro" htap-exporter

# Stage 1: build the wheel from the checkout and install it, with its dependencies and the `fast`
# extra (sqlglot's compiled tokenizer), into a venv. The dependencies' versions are pinned by constraints.txt (how to
# regenerate it is written at its top), so two builds of one commit install the same ones.
FROM python:3.12-slim AS build
ARG REVISION=unknown
WORKDIR /src
COPY pyproject.toml setup.py README.md LICENSE constraints.txt ./
COPY htap_exporter ./htap_exporter
RUN python -m venv /opt/htap-exporter \
    && HTAP_EXPORTER_REVISION="${REVISION}" pip wheel --no-cache-dir --no-deps --wheel-dir /wheels . \
    && wheel="$(echo /wheels/htap_exporter-*.whl)" \
    && /opt/htap-exporter/bin/pip install --no-cache-dir --constraint constraints.txt "${wheel}[fast]"

# Stage 2: the same slim base with only the venv; no compiler, no pip cache, no sources.
FROM python:3.12-slim
# OCI annotations; VERSION and REVISION come from the build (see the top of this file).
ARG VERSION=0.2.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="htap-exporter" \
      org.opencontainers.image.description="Prometheus exporter for the sessions of Huawei Cloud TaurusDB (GaussDB for MySQL) HTAP instances" \
      org.opencontainers.image.source="https://github.com/htap-exporter/htap-exporter" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"
COPY --from=build /opt/htap-exporter /opt/htap-exporter
ENV PATH=/opt/htap-exporter/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# The config is mounted here (a file, a ConfigMap); credentials come from the environment
# (${HW_ACCESS_KEY} in the config) or from mounted files (access_key_file: /run/secrets/...).
WORKDIR /etc/htap-exporter
# A numeric non-root user, so Kubernetes' runAsNonRoot can verify it without /etc/passwd.
USER 65532:65532
EXPOSE 9978
# The image has no curl: Python asks /-/healthy itself.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:9978/-/healthy', timeout=4).status != 200)"]
ENTRYPOINT ["htap-exporter"]
CMD ["--config.file=/etc/htap-exporter/config.yaml"]
