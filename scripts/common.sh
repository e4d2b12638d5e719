# Shared by quickstart.sh and test.sh: install what is missing, then build.
# Sourced, not run.

TUNEFARM_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TUNEFARM_BUILD="${TUNEFARM_BUILD:-$TUNEFARM_ROOT/build}"

# Debian 12 (bookworm) packages the build, the tests and the benchmarks need.
TUNEFARM_PACKAGES=(
  build-essential cmake ninja-build pkg-config git clang
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  libxgboost-dev xgboost libsqlite3-dev libspdlog-dev libfmt-dev libboost-dev
  libabsl-dev libcli11-dev nlohmann-json3-dev
  libgtest-dev libgmock-dev libbenchmark-dev libopenblas-dev libdnnl-dev ocl-icd-opencl-dev openssl libomp-dev
)

tunefarm_install_deps() {
  local missing=()
  local p
  for p in "${TUNEFARM_PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
      missing+=("$p")
    fi
  done
  if [ ${#missing[@]} -eq 0 ]; then
    return 0
  fi
  local cmd="apt-get install -y --no-install-recommends ${missing[*]}"
  if [ "$(id -u)" -ne 0 ]; then
    echo "tunefarm: these Debian packages are missing: ${missing[*]}" >&2
    echo "tunefarm: install them with:" >&2
    echo "  sudo apt-get update && sudo $cmd" >&2
    exit 1
  fi
  echo "tunefarm: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # shellcheck disable=SC2086
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# tunefarm_build [extra cmake args...]
tunefarm_build() {
  local jobs
  jobs="$(nproc 2>/dev/null || echo 2)"
  cmake -S "$TUNEFARM_ROOT" -B "$TUNEFARM_BUILD" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo "$@" >/dev/null
  cmake --build "$TUNEFARM_BUILD" -j "$jobs"
}
