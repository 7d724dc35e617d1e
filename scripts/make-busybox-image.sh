#!/bin/sh
# Builds a small base image from Debian's busybox-static and imports it as busybox:latest.
#   scripts/make-busybox-image.sh [NAME[:TAG]]     (RIMG=path/to/rimg, RIMG_ROOT=store)
# The rootfs has /bin/busybox, every applet as a symlink, /etc/passwd, /etc/group and /tmp.
# The tar is deterministic (sorted, mtime 0, root-owned), so the image id is reproducible.
set -eu
name=${1:-busybox:latest}
rimg=${RIMG:-rimg}
bb=/bin/busybox
if ! [ -x "$bb" ] || ! "$bb" --list-full >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q busybox-static >/dev/null
    else
        echo "make-busybox-image: busybox-static is not installed (apt-get install busybox-static)" >&2
        exit 1
    fi
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
root=$work/rootfs
mkdir -p "$root/bin" "$root/sbin" "$root/usr/bin" "$root/usr/sbin" "$root/etc" "$root/root" \
    "$root/home" "$root/var" "$root/proc" "$root/sys" "$root/dev" "$root/tmp"
chmod 1777 "$root/tmp"
chmod 700 "$root/root"
cp "$bb" "$root/bin/busybox"
for applet in $("$bb" --list-full); do
    [ "$applet" = bin/busybox ] && continue
    mkdir -p "$root/$(dirname "$applet")"
    ln -sf /bin/busybox "$root/$applet"
done
cat > "$root/etc/passwd" <<'PASSWD'
root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/bin/false
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
user:x:1000:1000:user:/home/user:/bin/sh
PASSWD
cat > "$root/etc/group" <<'GROUP'
root:x:0:
daemon:x:1:
users:x:100:user
nogroup:x:65534:
user:x:1000:
GROUP
mkdir -p "$root/home/user"
chown -R 0:0 "$root"
chown 1000:1000 "$root/home/user"
tar --sort=name --mtime=@0 --numeric-owner --format=posix \
    --pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime \
    -C "$root" -cf "$work/rootfs.tar" .
"$rimg" import -c 'CMD ["sh"]' -m "busybox-static $("$bb" 2>&1 | head -1 | cut -d' ' -f2)" \
    "$work/rootfs.tar" "$name"
