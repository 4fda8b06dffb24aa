#!/bin/sh
# The registry's start in docker-compose.yml: `start.sh CONFIG` runs `registry serve CONFIG`
# with its secrets read from files (the registry reads none from a file):
#
# - the webhook token ($SECRETS/webhook_token) goes into the registry's notification endpoint,
#   REGISTRY_NOTIFICATIONS_ENDPOINTS, which the registry reads over the file's endpoints, as YAML;
# - every file $SECRETS/REGISTRY_... becomes that variable, one of the registry's own overrides
#   (REGISTRY_STORAGE_S3_SECRETKEY in docker-compose.s3.yml).
#
# Only the names of the files are in the container's configuration (`docker inspect`); the
# values are in this process's environment. It refuses to start on an empty secret, and on a
# registry whose major version is not WARMER_REGISTRY_VERSION (the warmer would fill the other
# generation's cache keys).
set -eu
secrets=${SECRETS:-/run/secrets}

read_secret() {
  value=$(cat "$1") || exit 1
  if [ -z "$value" ]; then
    echo "registry: the secret $1 is empty (deploy/secrets/: see docs/deployment.md)" >&2
    exit 1
  fi
}

version=$(registry --version)
case "$version" in
  *" v${WARMER_REGISTRY_VERSION:-3}."* | *" ${WARMER_REGISTRY_VERSION:-3}."*) ;;
  *)
    echo "registry: WARMER_REGISTRY_VERSION=${WARMER_REGISTRY_VERSION:-3} but the image runs" \
      "$version: set REGISTRY_IMAGE to a registry:${WARMER_REGISTRY_VERSION:-3}.x image" >&2
    exit 1
    ;;
esac

for file in "$secrets"/REGISTRY_*; do
  [ -f "$file" ] || continue
  read_secret "$file"
  export "${file##*/}=$value"
done

read_secret "$secrets/webhook_token"
# The token as is, no shell or sed rewriting it: the warmer refuses one with a character that
# YAML or the header would change.
REGISTRY_NOTIFICATIONS_ENDPOINTS="[{name: warmer, url: \"${WARMER_WEBHOOK_URL:-http://webhook:8000/events}\",
  headers: {Authorization: [Bearer $value]}, timeout: 2s, threshold: 5, backoff: 1s}]"
export REGISTRY_NOTIFICATIONS_ENDPOINTS
unset value
exec registry serve "$@"
