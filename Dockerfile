# syntax=docker/dockerfile:1
# The musdpay image: one image for every role (`serve`, `monitor`, `deliver`, `db upgrade`, `alerts render`,
# `reconcile`, `apikey`, ...). docker-compose.yml runs it; `docker build -t musdpay .` builds it.
#
#   stage `build`     wheels of the project and of its runtime dependencies (never the [dev] extra)
#   stage `runtime`   (the default target) a slim Python with only those wheels, as uid/gid 10001
#   stage `devtools`  anvil from package-lock.json (npm), for the `dev` target only
#   stage `dev`       runtime + anvil + the MUSD artifact, so `musdpay sandbox chain` works (compose dev profile)
#
# The base image is pinned by version tag and digest. The digest is the one published for
# python:3.11.10-slim-bookworm (multi-arch index), as recorded by a public Renovate-maintained digest list; it
# could not be checked against the registry from the machine this was written on (no network). Refresh both
# together: `docker buildx imagetools inspect python:3.11.10-slim-bookworm`.
ARG PYTHON_IMAGE=python:3.11.10-slim-bookworm@sha256:5148c0e4bbb64271bca1d3322360ebf4bfb7564507ae32dd639322e4952a6b16

FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
# Only what the wheel is built from (pyproject's [tool.hatch.build.targets.wheel] packages and the readme);
# tests, docs and dev tooling stay out of the image.
COPY pyproject.toml README.md ./
COPY payment ./payment
COPY monitor ./monitor
COPY alerts ./alerts
COPY dashboards ./dashboards
COPY sandbox ./sandbox
COPY operate ./operate
COPY musdpay ./musdpay
# `pip wheel .` builds the project's wheel and one for every runtime dependency; extras ([dev]) are not asked for,
# so none of them is built.
RUN pip wheel --wheel-dir /wheels .

FROM ${PYTHON_IMAGE} AS runtime
ARG MUSDPAY_UID=10001
ARG MUSDPAY_GID=10001
# HOME and every cache point into the one writable place, /var/lib/musdpay (a volume), so the container runs with
# a read-only root filesystem. Python writes no .pyc files; matplotlib (`musdpay report`) keeps its font cache in
# MPLCONFIGDIR. Temporary files: mount a tmpfs on /tmp (docker-compose.yml does; `docker run --tmpfs /tmp`).
ENV PATH=/opt/musdpay/bin:$PATH \
    HOME=/var/lib/musdpay \
    MPLCONFIGDIR=/var/lib/musdpay/matplotlib \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    python -m venv /opt/musdpay \
    && /opt/musdpay/bin/pip install --no-index --find-links /wheels musdpay \
    && /opt/musdpay/bin/pip uninstall --yes pip \
    && groupadd --system --gid ${MUSDPAY_GID} musdpay \
    && useradd --system --uid ${MUSDPAY_UID} --gid ${MUSDPAY_GID} --home-dir /var/lib/musdpay --no-create-home \
         --shell /usr/sbin/nologin musdpay \
    && install -d -o ${MUSDPAY_UID} -g ${MUSDPAY_GID} -m 0755 /var/lib/musdpay
# Relative paths (the SQLite default, ./monitor.yml) resolve here, inside the volume. A new named volume mounted
# here takes this directory's owner (10001) and mode: 0755, so another container's user can read what is written
# (docker-compose.yml: `alerts render` writes Alertmanager's config into such a volume, Alertmanager reads it).
WORKDIR /var/lib/musdpay
VOLUME ["/var/lib/musdpay"]
USER 10001:10001
EXPOSE 3001
# Liveness of the API (`serve`); the other roles override or disable it (docker-compose.yml does). Slim images
# have no curl: Python's urllib fails (exit 1) on a refused connection or any non-2xx answer.
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('MUSDPAY_PORT', '3001') + '/healthz', timeout=4)"]
ENTRYPOINT ["musdpay"]
CMD ["serve", "--host", "0.0.0.0"]

# anvil at the version package-lock.json pins (@foundry-rs/anvil ships the binary in a per-platform package);
# --ignore-scripts: the platform package already holds it, nothing is downloaded by a postinstall.
FROM node:22.11.0-bookworm-slim AS devtools
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --ignore-scripts --no-audit --no-fund

# The dev image (docker-compose.yml's dev profile: `musdpay sandbox chain`). sandbox/chain looks for anvil and the
# MUSD artifact next to its package root, which for the installed wheel is the venv's site-packages directory
# (sandbox/chain/anvil.py: ROOT = parents[2]); both are copied there. Never deploy this target.
FROM runtime AS dev
COPY --from=devtools /src/node_modules/@foundry-rs /opt/musdpay/lib/python3.11/site-packages/node_modules/@foundry-rs
COPY contracts/artifacts/MUSD.json /opt/musdpay/lib/python3.11/site-packages/contracts/artifacts/MUSD.json
