# syntax=docker/dockerfile:1
# The Quartermaster image: the operator (`quartermaster operator run`), the clustering Jobs it creates,
# the router (`quartermaster router serve`) and the chart's `helm test` hook all run it.
#
#   docker build -t ghcr.io/quartermaster-dev/quartermaster:0.1.0 .
#
# The runtime stage holds only a virtualenv with the package and its pinned dependencies (wheels: no
# compiler needed), runs as the non-root uid/gid 65532 the Helm chart's securityContext expects, and
# works with a read-only root file system (HOME and temporary files live in /tmp, an emptyDir in the
# chart).

ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
RUN python -m venv /opt/quartermaster
COPY pyproject.toml README.md ./
COPY src ./src
RUN /opt/quartermaster/bin/pip install . \
    && /opt/quartermaster/bin/quartermaster version

FROM ${PYTHON_IMAGE}
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="quartermaster" \
      org.opencontainers.image.description="Kubernetes operator for cheap LLM serving on GPU node pools" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/quartermaster-dev/quartermaster"
ENV PATH=/opt/quartermaster/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp
COPY --from=build /opt/quartermaster /opt/quartermaster
USER 65532:65532
WORKDIR /tmp
ENTRYPOINT ["quartermaster"]
CMD ["operator", "run"]
