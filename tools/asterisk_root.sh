#!/bin/sh
# Build (or reuse) the Asterisk 22 root from Debian unstable's packages.
# The root is cached outside the work tree and rebuilt only when missing or
# when the package list / layout below changes. Nothing is edited by hand:
# everything the root needs is done here.
set -eu

ROOT="${KINLINE_ASTERISK_ROOT:-/var/cache/kinline/asterisk-root}"
PACKAGES="asterisk asterisk-modules asterisk-core-sounds-en asterisk-core-sounds-en-gsm asterisk-core-sounds-ru asterisk-core-sounds-ru-gsm asterisk-core-sounds-fr asterisk-core-sounds-fr-gsm"
# Mount points the stack binds into the root (tools/stack.py asterisk_mounts).
MOUNTPOINTS="/etc/kinline /usr/share/kinline/dialplan /usr/share/asterisk/sounds/kinline /var/lib/kinline/db /var/lib/kinline/recordings /var/lib/kinline/names /var/lib/kinline/run"
LAYOUT=4
STAMP="packages=$PACKAGES
mountpoints=$MOUNTPOINTS
layout=$LAYOUT"

# A rebuild renames the old root aside (see below): running stacks use it through
# bind mounts, and deleting it would delete their files. A retired root is deleted
# after a day, and only when no process runs inside it (/proc/<pid>/root).
delete_retired() {
    now=$(date +%s)
    for old in "$ROOT".old.*; do
        [ -d "$old" ] || continue
        retired=${old##*.old.}
        case "$retired" in ''|*[!0-9]*) continue ;; esac
        [ $((now - retired)) -gt 86400 ] || continue
        in_use=0
        for r in /proc/[0-9]*/root; do
            case "$(readlink "$r" 2>/dev/null)" in "$old"|"$old"/*) in_use=1; break ;; esac
        done
        if [ "$in_use" = 0 ]; then
            rm -rf "$old"
            echo "asterisk root: deleted $old (retired over a day ago, unused)"
        fi
    done
}

if [ -f "$ROOT/.kinline-stamp" ] && [ "$(cat "$ROOT/.kinline-stamp")" = "$STAMP" ] \
   && [ -x "$ROOT/usr/sbin/asterisk" ]; then
    echo "asterisk root: cached at $ROOT"
    delete_retired
    exit 0
fi

# The mirror of the machine's own apt sources (deb822 or one-line format).
mirror() {
    for f in /etc/apt/sources.list.d/*.sources /etc/apt/sources.list.d/debian.sources; do
        [ -f "$f" ] || continue
        m=$(awk '/^URIs:/ {u=$2} /^Suites:/ && $2 ~ /^(bookworm|trixie|forky|sid|stable|testing|unstable)$/ {print u; exit}' "$f")
        [ -n "$m" ] && { echo "$m"; return; }
    done
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [ -f "$f" ] || continue
        m=$(awk '$1 == "deb" && $3 ~ /^(bookworm|trixie|forky|sid|stable|testing|unstable)$/ {print $2; exit}' "$f")
        [ -n "$m" ] && { echo "$m"; return; }
    done
}
MIRROR=$(mirror)
[ -n "$MIRROR" ] || { echo "asterisk root: no Debian mirror found in apt sources" >&2; exit 1; }

command -v debootstrap >/dev/null || { echo "asterisk root: debootstrap missing" >&2; exit 1; }

TMP="$ROOT.build.$$"
rm -rf "$TMP"
mkdir -p "$(dirname "$ROOT")"
echo "asterisk root: building from Debian unstable ($MIRROR) into $ROOT"
INCLUDE=$(echo "$PACKAGES" | tr ' ' ',')
debootstrap --variant=minbase --include="$INCLUDE" sid "$TMP" "$MIRROR" >"$TMP.log" 2>&1 \
    || { tail -20 "$TMP.log" >&2; rm -rf "$TMP"; exit 1; }
# The language alternatives (sounds/ru -> ru_RU_f_IvrvoiceRU...) are made by
# the sound packages' postinst; check they exist.
for lang in en ru fr; do
    [ -e "$TMP/usr/share/asterisk/sounds/$lang" ] || chroot "$TMP" /bin/sh -c \
        "ls -d /usr/share/asterisk/sounds/$lang/" >/dev/null \
        || { echo "asterisk root: sounds for $lang missing" >&2; exit 1; }
done
for d in $MOUNTPOINTS; do mkdir -p "$TMP$d"; done
# Resolve the host name locally: without it Asterisk does DNS on every call.
printf '127.0.0.1\tlocalhost\n127.0.1.1\t%s\n::1\tlocalhost ip6-localhost ip6-loopback\n' \
    "$(hostname)" >"$TMP/etc/hosts"
chroot "$TMP" apt-get clean >/dev/null 2>&1 || true
printf '%s' "$STAMP" >"$TMP/.kinline-stamp"
# Never delete the root in place: rename it aside, named by the time it was retired.
if [ -e "$ROOT" ]; then
    mv "$ROOT" "$ROOT.old.$(date +%s)"
fi
mv "$TMP" "$ROOT"
rm -f "$TMP.log"
delete_retired
echo "asterisk root: ready ($(chroot "$ROOT" /usr/sbin/asterisk -V))"
