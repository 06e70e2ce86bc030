# The verifier server image (`restem serve` in a container). Build context: the repo root.
#   production: docker build -t restem-verifier:VERSION .                     (python slim)
#   offline CI: deploy/build-images.sh, which passes the debootstrap base and a docker CLI
#               image made from the host's binary (nothing is pulled).
# BASE_IMAGE must have Python 3.11 (python:3.11-slim-bookworm, or Debian bookworm's python3).
ARG BASE_IMAGE=python:3.11-slim-bookworm
ARG DOCKER_CLI_IMAGE=docker:28-cli

# The docker backend runs sandbox containers next to this one through the host's engine;
# it needs only the CLI binary.
FROM ${DOCKER_CLI_IMAGE} AS docker-cli

FROM ${BASE_IMAGE} AS build
# python slim has venv; on the Debian base it comes from apt, in this stage only.
RUN python3 -m venv /opt/venv 2>/dev/null || { \
        apt-get update && apt-get install -y --no-install-recommends python3-venv \
        && python3 -m venv --clear /opt/venv; }
# Behind a TLS-intercepting proxy, the proxy's CA for pip (build stage only; the build script
# copies $PIP_CERT to .build/pip-ca.pem). The wildcard lets the file be absent.
COPY pyproject.toml README.md .build/pip-ca.pe[m] /src/
COPY restem_proto /src/restem_proto
COPY verifier_server /src/verifier_server
COPY sandbox /src/sandbox
COPY restem_client /src/restem_client
COPY evals /src/evals
# The base dependencies only (grpc, sympy, pylatexenc, prometheus): no torch, no vLLM.
RUN if [ -f /src/pip-ca.pem ]; then export PIP_CERT=/src/pip-ca.pem; fi; \
    /opt/venv/bin/pip install --no-cache-dir --disable-pip-version-check /src \
    && /opt/venv/bin/pip uninstall -y --disable-pip-version-check pip setuptools \
    && python3 -m compileall -q /opt/venv  # the root is read-only at run time: no .pyc later

FROM ${BASE_IMAGE}
# bubblewrap: the namespace backend, for hosts without a Docker socket to lend.
RUN (command -v bwrap || { apt-get update && apt-get install -y --no-install-recommends \
        bubblewrap && rm -rf /var/lib/apt/lists/*; }) >/dev/null
COPY --from=docker-cli /usr/local/bin/docker /usr/local/bin/docker
COPY --from=build /opt/venv /opt/venv
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="restem verifier server" \
      org.opencontainers.image.version="${VERSION}"
# Listen on every interface inside the container. The server refuses to start there without
# a token (/run/secrets/restem-token or RESTEM_TOKEN_FILE) or TLS.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    DOCKER_CONFIG=/tmp/.docker \
    RESTEM_HOST=0.0.0.0 \
    RESTEM_PORT=50051 \
    RESTEM_METRICS_PORT=9100
# Non-root; with the docker backend the container also needs the socket's group (group_add).
USER 10001:10001
WORKDIR /tmp
EXPOSE 50051 9100
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-m", "verifier_server.probe"]
ENTRYPOINT ["python", "-m", "verifier_server.server"]
