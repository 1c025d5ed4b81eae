#!/usr/bin/env bash
# Installs the Debian packages lazarus-report benefits from, when it can (root or passwordless sudo).
#   blas     libopenblas0-pthread: MLX's CPU backend runs matmuls 30-100x faster with it (Linux only)
#   browser  chromium: the headless browser the HTML report tests drive through Playwright
# Without root it prints the one command to run and carries on.
set -u
[ "$(uname -s)" = "Linux" ] || exit 0
pkgs=()
for want in "$@"; do
  case "$want" in
    blas) [ -e /usr/lib/x86_64-linux-gnu/openblas-pthread/libopenblas.so.0 ] || [ -e /usr/lib/aarch64-linux-gnu/openblas-pthread/libopenblas.so.0 ] || pkgs+=(libopenblas0-pthread) ;;
    browser) command -v chromium >/dev/null || pkgs+=(chromium) ;;
    *) echo "install_system_deps.sh: unknown component $want" >&2; exit 2 ;;
  esac
done
[ ${#pkgs[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ]; then sudo=""; elif sudo -n true 2>/dev/null; then sudo="sudo -n"; else
  echo "lazarus-report: for full speed and the browser tests, run: sudo apt-get install -y ${pkgs[*]}" >&2
  exit 0
fi
if ! command -v apt-get >/dev/null; then
  echo "lazarus-report: no apt-get here; install OpenBLAS / Chromium with your package manager (${pkgs[*]})" >&2
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq >/dev/null && $sudo apt-get install -y -qq "${pkgs[@]}" >/dev/null || {
  echo "lazarus-report: apt-get install ${pkgs[*]} failed; continuing without it" >&2; exit 0; }
