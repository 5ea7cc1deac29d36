#!/usr/bin/env bash
# Install the Debian packages the tests and the demo need, only when something is missing.
# Each line below is "what to look for" then "the package that provides it": a command name,
# or an absolute path to a file.
set -euo pipefail

NEEDS=(
  "pdftoppm poppler-utils"
  "pdfsig poppler-utils"
  "certutil libnss3-tools"
  "dot graphviz"
  "zbarimg zbar-tools"
  "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf fonts-dejavu-core"
  "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc fonts-wqy-microhei"
  "/usr/bin/chromium chromium"
)

missing=()
for entry in "${NEEDS[@]}"; do
  what=${entry% *}
  package=${entry##* }
  if [[ $what == /* ]]; then
    [[ -e $what ]] || missing+=("$package")
  else
    command -v "$what" >/dev/null 2>&1 || missing+=("$package")
  fi
done

[[ ${#missing[@]} -eq 0 ]] && exit 0

if [[ $(id -u) -ne 0 ]]; then
  echo "sysdeps: missing Debian packages: ${missing[*]} (run: sudo apt-get install -y ${missing[*]})" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
echo "sysdeps: installing ${missing[*]}"
if ! apt-get install -y -qq "${missing[@]}" >/dev/null 2>&1; then
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}"
fi
