#!/usr/bin/env bash
# Builds the image skiff/busybox:latest offline, from Debian's busybox-static: a static busybox
# with its applets (sh, httpd, sleep, ...) and a small /www/index.html. No registry is needed.
# Idempotent: an image already built from the same busybox is kept as it is.
# For Podman, SKIFF_ENGINE_CLI=podman builds it in Podman's store (the CLI's options are the same).
set -euo pipefail
source "$(dirname "$0")/lib.sh"

image="${SKIFF_IMAGE:-skiff/busybox:latest}"
busybox="${BUSYBOX:-/bin/busybox}"
cli="${SKIFF_ENGINE_CLI:-docker}"

if ! [ -x "$busybox" ]; then
    echo "build-image: no busybox at $busybox; install Debian's busybox-static (apt-get install busybox-static)" >&2
    exit 1
fi
if ldd "$busybox" >/dev/null 2>&1; then
    echo "build-image: $busybox is dynamically linked; install busybox-static" >&2
    exit 1
fi

# The label records which busybox the image holds, so a rebuild is skipped when nothing changed.
digest=$(sha256sum "$busybox" | cut -c1-16)
if current=$("$cli" image inspect --format '{{ index .Config.Labels "skiff.busybox" }}' "$image" 2>/dev/null) \
    && [ "$current" = "$digest" ]; then
    echo "build-image: $image is up to date (busybox $digest)"
    exit 0
fi

work=$(mktemp -d)
on_exit_remove_dir "$work"
clean_up_on_exit
root="$work/root"
mkdir -p "$root/bin" "$root/www" "$root/tmp" "$root/etc"
cp "$busybox" "$root/bin/busybox"
for applet in $("$busybox" --list); do
    [ "$applet" = busybox ] || ln -sf busybox "$root/bin/$applet"
done
cat > "$root/www/index.html" <<'HTML'
<!doctype html>
<title>skiff</title>
<p>Hello from a Skiff task.</p>
HTML
echo 'root:x:0:0:root:/:/bin/sh' > "$root/etc/passwd"
echo 'root:x:0:' > "$root/etc/group"
chmod 1777 "$root/tmp"

echo "build-image: importing $image from $busybox ($digest) with $cli"
tar -C "$root" -c . | "$cli" import \
    -c 'ENV PATH=/bin' \
    -c 'WORKDIR /' \
    -c 'CMD ["sh"]' \
    -c "LABEL skiff.busybox=$digest" \
    - "$image" >/dev/null
"$cli" image inspect --format 'build-image: built {{ .Id }}' "$image"
