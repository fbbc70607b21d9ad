#!/bin/sh
# The `secrets` service (docker-compose.yml), run before every other: the Docker counterpart of bin/stack's
# ensure_secrets. Each name of $SECRET_NAMES (the same list as bin/stack's SECRET_NAMES) is generated once into the
# master volume (/secrets, mounted here only) as 48 random hex characters, and never changed after. Then each
# service's own volume, mounted at /out/<service>, gets exactly the names of $SECRETS_FOR_<SERVICE> (e.g.
# SECRETS_FOR_DB_SETUP for /out/db-setup); a name no longer listed is removed from it. (SECRETS_MASTER and
# SECRETS_OUT move both folders, for test/stack/compose.test.ts.)
set -eu
umask 077
master=${SECRETS_MASTER:-/secrets}
outs=${SECRETS_OUT:-/out}

random_hex() { od -An -N24 -tx1 /dev/urandom | tr -d ' \n'; }

for name in $SECRET_NAMES; do
  if [ ! -s "$master/$name" ]; then
    random_hex >"$master/$name.tmp"
    mv "$master/$name.tmp" "$master/$name"
    echo "secrets: generated $name"
  fi
done

for out in "$outs"/*/; do
  service=$(basename "$out")
  var=SECRETS_FOR_$(echo "$service" | tr 'a-z-' 'A-Z_')
  wanted=""
  eval "wanted=\${$var-UNSET}"
  if [ "$wanted" = UNSET ]; then
    echo "secrets: $outs/$service is mounted but $var is not set" >&2
    exit 78
  fi
  for name in $wanted; do
    if [ ! -s "$master/$name" ]; then
      echo "secrets: $var names $name, which is not in SECRET_NAMES" >&2
      exit 78
    fi
    # Readable by the service's user whatever its uid: the volume is mounted in that one service only.
    cp "$master/$name" "$out/$name.tmp" && chmod 0444 "$out/$name.tmp" && mv "$out/$name.tmp" "$out/$name"
  done
  for file in "$out"*; do
    [ -e "$file" ] || continue
    case " $wanted " in
      *" $(basename "$file") "*) ;;
      *) rm -f "$file"; echo "secrets: removed $(basename "$file") from $service" ;;
    esac
  done
  echo "secrets: $service has $(echo "$wanted" | wc -w) secrets"
done
