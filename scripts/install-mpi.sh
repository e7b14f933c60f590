#!/usr/bin/env bash
# Installs Open MPI (mpirun and libmpi.so.40), which Kiln's distributed training uses: `mpirun -np N kiln ...`.
# Idempotent: does nothing when mpirun and libmpi are already there. Debian/Ubuntu (apt-get), as root or through sudo.
# Afterwards check the set-up with:  mpirun --oversubscribe -np 2 kiln mpi-check
# (as root, Open MPI also wants --allow-run-as-root, or OMPI_ALLOW_RUN_AS_ROOT=1 and OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1).
set -euo pipefail

have_libmpi() {
    ldconfig -p 2>/dev/null | grep -q 'libmpi\.so\.40' || [ -e /usr/lib/x86_64-linux-gnu/libmpi.so.40 ] || [ -e /usr/lib/aarch64-linux-gnu/libmpi.so.40 ]
}

if command -v mpirun >/dev/null 2>&1 && have_libmpi; then
    echo "install-mpi: Open MPI is already installed: $(mpirun --version 2>/dev/null | head -n 1)"
    exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-mpi: no apt-get here; install Open MPI 4 or 5 with your system's package manager" >&2
    echo "  (Fedora: dnf install openmpi openmpi-devel; macOS: brew install open-mpi) and make libmpi.so.40 loadable," >&2
    echo "  or set KILN_MPI_LIBRARY to its path" >&2
    exit 1
fi

if [ "$(id -u)" -eq 0 ]; then
    as_root=()
elif command -v sudo >/dev/null 2>&1; then
    as_root=(sudo)
else
    echo "install-mpi: installing packages needs root: run this script as root or install sudo" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
"${as_root[@]}" apt-get update -q
"${as_root[@]}" apt-get install -y -q openmpi-bin libopenmpi-dev

if ! command -v mpirun >/dev/null 2>&1 || ! have_libmpi; then
    echo "install-mpi: the packages installed but mpirun or libmpi.so.40 is still missing" >&2
    exit 1
fi
echo "install-mpi: installed $(mpirun --version 2>/dev/null | head -n 1)"
