#!/bin/sh
# Writes the daemon's token where prometheus.yml's credentials_file points, then becomes Prometheus.
set -eu
umask 077
if [ -n "${SPIWIRE_TOKEN_FILE:-}" ]; then
  cp "$SPIWIRE_TOKEN_FILE" /run/spiwire/token
else
  printf '%s' "${SPIWIRE_TOKEN:?set SPIWIRE_TOKEN (or SPIWIRE_TOKEN_FILE) to the daemon's token}" > /run/spiwire/token
fi
exec prometheus --config.file=/etc/spiwire/prometheus.yml --storage.tsdb.path=/prometheus --web.listen-address=0.0.0.0:9090 "$@"
