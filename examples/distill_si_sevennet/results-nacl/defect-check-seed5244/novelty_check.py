"""The novelty grade (issue 18, atomflux.uncertainty.novelty) of the replayed run's last frame.

The student's novelty data are fitted on its own 93 teacher labels (rounds 0-3 of the distillation);
run from results-nacl/work after the replay (final.data from in.replay).
"""
import glob
import sys

import numpy as np
from ase.io import read

from atomflux.io import load_model
from atomflux.uncertainty import fit_novelty, novelty_grades
from atomflux.uncertainty.novelty import attach_novelty

final_data = sys.argv[1] if len(sys.argv) > 1 else "final.data"
student = load_model("distill/student.pt")
labels = [atoms for path in sorted(glob.glob("distill/round-*/labels.extxyz")) for atoms in read(path, ":")]
attach_novelty(student, fit_novelty(student, labels))
print(f"novelty data from {len(labels)} label frames")
for name, path in (("ideal", "nacl216.data"), ("final", final_data)):
    grades = novelty_grades(student, read(path, format="lammps-data", atom_style="atomic"))
    print(f"{name}: largest grade {grades.max():.2f}, atoms above 1.5: {(grades > 1.5).sum()}, "
          f"median {np.median(grades):.2f}")
print(f"round-3 labels (300 and 700 K MD of the student): largest grade "
      f"{max(novelty_grades(student, atoms).max() for atoms in read('distill/round-003/labels.extxyz', ':')):.2f}")
