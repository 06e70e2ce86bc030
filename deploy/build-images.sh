#!/usr/bin/env bash
# Builds the two images, both tagged with the package version:
#   restem-sandbox:<version>   the sandbox (also tagged by content hash, which pools look up)
#   restem-verifier:<version>  the verifier server (top-level Dockerfile)
# Offline, the default here: the debootstrap base (sandbox/image/build-base.sh) and a docker
# CLI image made from this host's `docker` binary, so nothing is pulled. Production:
#   BASE_IMAGE=python:3.11-slim-bookworm DOCKER_CLI_IMAGE=docker:28-cli deploy/build-images.sh
# Prints the two tags. Env: PY (default .venv/bin/python, else python3).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
version=$($PY -c 'import tomllib; print(tomllib.load(open("pyproject.toml", "rb"))["project"]["version"])')
base=${BASE_IMAGE:-restem-sandbox-base:bookworm}
cli=${DOCKER_CLI_IMAGE:-restem-docker-cli:local}

case "$base" in  # the offline base is built here (cached by tag); others are pulled
    restem-sandbox-base:*) sandbox/image/build-base.sh "$base" >&2 ;;
esac
if [ -z "${DOCKER_CLI_IMAGE:-}" ] && ! docker image inspect "$cli" >/dev/null 2>&1; then
    root=$(mktemp -d)
    trap 'rm -rf "$root"' EXIT
    install -D -m 0755 "$(command -v docker)" "$root/usr/local/bin/docker"
    tar -C "$root" --numeric-owner -c . | docker import - "$cli" >/dev/null
fi

# A TLS-intercepting proxy's CA, for pip inside the build (see the Dockerfile).
rm -f .build/pip-ca.pem
if [ -n "${PIP_CERT:-}" ]; then install -D -m 0644 "$PIP_CERT" .build/pip-ca.pem; fi

sandbox=$($PY -m sandbox.image build --base-image "$base")
docker tag "$sandbox" "restem-sandbox:$version"
# --network host: the build stages reach the package registries the way this host does.
docker build -q --network host --build-arg BASE_IMAGE="$base" \
    --build-arg DOCKER_CLI_IMAGE="$cli" --build-arg VERSION="$version" \
    -t "restem-verifier:$version" . >/dev/null
echo "restem-sandbox:$version ($sandbox)"
echo "restem-verifier:$version"
