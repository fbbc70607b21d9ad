#!/bin/sh
# Every image's entrypoint: replaces each @NAME@ in an environment value by the secret NAME, read from this service's
# own secrets volume (mounted at $SECRETS_DIR; the `secrets` service fills it with this service's names only), then
# runs the command. docker-compose.yml thus names every secret a service gets (DATABASE_URL with @PG_API_PASSWORD@…),
# `docker inspect` shows the placeholders, never the values, and no password is on a command line.
# POSIX sh: it runs on Debian (dash), Alpine (busybox) and in the Kafka image alike.
set -eu
dir=${SECRETS_DIR:-/run/project-secrets}

for var in $(env | sed -n 's/^\([A-Za-z_][A-Za-z0-9_]*\)=.*@[A-Z][A-Z0-9_]*@.*$/\1/p'); do
  eval "value=\${$var}"
  out=""
  while :; do
    case $value in
      *@[A-Z]*@*) ;;
      *) break ;;
    esac
    before=${value%%@*}
    rest=${value#*@}
    name=${rest%%@*}
    case $name in
      "" | *[!A-Z0-9_]*) out="$out$before@"; value=$rest; continue ;;
    esac
    if [ ! -r "$dir/$name" ]; then
      echo "with-secrets: SECRET_MISSING: $var wants secret $name, which this service was not given ($dir)" >&2
      exit 78
    fi
    secret=""
    IFS= read -r secret <"$dir/$name" || [ -n "$secret" ]
    out="$out$before$secret"
    value=${rest#*@}
  done
  export "$var=$out$value"
done

exec "$@"
