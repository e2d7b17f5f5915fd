#!/bin/sh
# The image's entrypoint: run mgen as the owner of /workspace (the host's ./out), so what it
# writes belongs to the host user, whatever their uid. setpriv (util-linux) drops root.
#  - Started with --user (or compose `user:`): that user runs mgen as is.
#  - /workspace empty and owned by root: Docker created the missing ./out itself. It goes to
#    MGEN_UID:MGEN_GID (default 1000:1000, the first user on most Linux machines) first.
#  - /workspace owned by root and not empty: root's files, so root runs mgen.
# The model volume follows the same owner so downloads work. MGEN_WORKSPACE and MGEN_MODELS
# point the script elsewhere (tests/test_docker.py runs it outside a container).
set -eu
workspace=${MGEN_WORKSPACE:-/workspace}
models=${MGEN_MODELS:-/models}

if [ "$(id -u)" != 0 ]; then
    exec mgen "$@"
fi
mkdir -p "$workspace" "$models"
uid=$(stat -c %u "$workspace")
gid=$(stat -c %g "$workspace")
if [ "$uid" = 0 ] && [ -z "$(ls -A "$workspace")" ]; then
    uid=${MGEN_UID:-1000}
    gid=${MGEN_GID:-$uid}
    chown "$uid:$gid" "$workspace"
fi
if [ "$uid" = 0 ]; then
    exec mgen "$@"
fi
if [ "$(stat -c %u "$models")" != "$uid" ]; then
    chown -R "$uid:$gid" "$models"
fi
# A uid from the host has no home in the image; caches that follow HOME need a writable one.
HOME=/tmp
export HOME
exec setpriv --reuid="$uid" --regid="$gid" --clear-groups -- mgen "$@"
