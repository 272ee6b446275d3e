import numpy as np, warnings
warnings.filterwarnings("ignore")
from ase.io import read
from ase.neighborlist import neighbor_list
from atomflux import AtomfluxCalculator
W = "/work/wt/nacl23/examples/distill_si_sevennet/results-nacl/work/"
ideal = read(W + "nacl216.data", format="lammps-data", atom_style="atomic")
final = read("final.data", format="lammps-data", atom_style="atomic")
print(sorted(set(final.get_chemical_symbols())), final.get_chemical_symbols()[:4], ideal.get_chemical_symbols()[:4])
s = np.array(final.get_chemical_symbols())
i, j = neighbor_list("ij", final, 3.4)
print("unlike within 3.4:", np.bincount(np.bincount(i[s[i] != s[j]], minlength=216)), "like:", np.bincount(np.bincount(i[s[i] == s[j]], minlength=216)))
disp = final.get_positions() - ideal.get_positions()
L = final.cell.array.diagonal(); disp -= L * np.round(disp / L); disp -= np.median(disp, 0)
r = np.linalg.norm(disp, axis=1)
print("median %.3f Å, > 1 Å: %d (%s)" % (np.median(r), (r > 1).sum(), ", ".join(f"{s[k]} {r[k]:.1f}" for k in np.argsort(-r)[:12])))
calc = AtomfluxCalculator(W + "distill/student.pt")
for name, at in (("ideal", ideal), ("final", final)):
    at.calc = calc; at.get_forces(); u = calc.results["energies_uncertainty"]; e = calc.results["energy_uncertainty"]
    print(name, "energy σ %.4f eV (%.2f meV/atom); per-atom σ max %.4f, median %.4f" % (e, 1000 * e / len(at), u.max(), np.median(u)))
    if name == "final":
        top = np.argsort(-u)[:5]; print(" largest per-atom σ at atoms displaced", r[top].round(2))
