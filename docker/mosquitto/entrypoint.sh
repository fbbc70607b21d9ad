#!/bin/sh
# Mosquitto's entrypoint, as root (the broker then drops to its own user, mosquitto, uid 1883): bin/stack's
# mosquitto_provision. The service users' lines (admin, bridge-0) are written into the password file, keeping every
# other line (drivers' credentials, written by the API through the same volume); the broker's pid goes beside it, so
# the API (same uid, same pid namespace: docker-compose.yml) can make it re-read the file with SIGHUP.
set -eu
auth=/mosquitto/auth
passwd=$auth/passwd
mkdir -p "$auth" && chown mosquitto:mosquitto "$auth" && chmod 0750 "$auth"

# The issuer's lock (lib/mqtt-credentials.ts): an API may be issuing while the broker restarts. One left by a process
# that died is taken over after a minute, as the issuer does.
lock=$passwd.lock
until (set -C && echo $$ >"$lock") 2>/dev/null; do
  if [ -n "$(find "$lock" -mmin +1 2>/dev/null)" ]; then rm -f "$lock"; else sleep 0.1; fi
done
plain=$(mktemp)
# printf is the shell's own: no password on a command line. mosquitto_passwd -U hashes the file in place.
printf 'admin:%s\nbridge-0:%s\nmodes:%s\n' "$MQTT_ADMIN_PASSWORD" "$MQTT_BRIDGE_PASSWORD" "$MQTT_MODES_PASSWORD" >"$plain"
mosquitto_passwd -U "$plain"
{ grep -v -E '^(admin|bridge-0|modes):' "$passwd" 2>/dev/null || true; cat "$plain"; } >"$passwd.tmp"
chown mosquitto:mosquitto "$passwd.tmp" && chmod 0600 "$passwd.tmp" && mv "$passwd.tmp" "$passwd"
rm -f "$plain" "$lock"

# The health check logs in as admin from a file (mosquitto_pub reads $XDG_CONFIG_HOME/mosquitto_pub), not argv.
probe=/var/lib/mosquitto-probe
mkdir -p "$probe" && chmod 0700 "$probe"
(umask 077 && printf '%s\n' "-u admin" "-P $MQTT_ADMIN_PASSWORD" >"$probe/mosquitto_pub")

# exec keeps this pid: the file names the broker itself.
echo $$ >"$auth/mosquitto.pid" && chmod 0644 "$auth/mosquitto.pid"
exec mosquitto -c /mosquitto/config/mosquitto.conf
