#!/usr/bin/env bash
# Build the image and run the quick test suite on the tiny random model in it, as README's Docker
# section does; then check the outputs are yours, also in an ./out that Docker had to create.
# Needs a Docker daemon (not run in CI); uses the GPUs when the NVIDIA runtime is there.
#   scripts/docker_smoke.sh            # image tag: mgen (MGEN_IMAGE=... to change it)
set -euo pipefail
cd "$(dirname "$0")/.."
image=${MGEN_IMAGE:-mgen}
docker build -t "$image" .

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
cp examples/lyrics_terraform_my_heart.txt "$out/"
gpus=()
if docker info --format '{{json .Runtimes}}' 2>/dev/null | grep -q nvidia; then gpus=(--gpus all); fi
run() { docker run --rm ${gpus[@]+"${gpus[@]}"} "$@"; }

fail() { echo "docker smoke: $*" >&2; exit 1; }
owned_by_me() {
    [ -s "$1" ] || fail "missing $1"
    [ "$(stat -c %u "$1")" = "$(id -u)" ] || fail "$1 is owned by uid $(stat -c %u "$1"), not by you ($(id -u))"
}

run -v "$out:/workspace" "$image" test-suite --quick --model-key tiny-random
for file in out_small.wav out_medium.wav output/terraform-my-heart.wav output/terraform-my-heart.json report.json; do
    owned_by_me "$out/$file"
done
grep -q '"status": "ok"' "$out/report.json" || fail "report.json has no ok job"

# A missing ./out: Docker creates it as root; the entrypoint gives it to MGEN_UID:MGEN_GID.
run -e MGEN_UID="$(id -u)" -e MGEN_GID="$(id -g)" -v "$out/created:/workspace" "$image" \
    generate --model-key tiny-random --duration 1 --out clip.wav --quiet "smoke"
owned_by_me "$out/created"
owned_by_me "$out/created/clip.wav"
echo "docker smoke: ok ($image)"
