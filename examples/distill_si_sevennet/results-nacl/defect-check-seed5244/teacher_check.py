import numpy as np, warnings
warnings.filterwarnings("ignore")
from ase.io import read
from atomflux import AtomfluxCalculator
W = "/work/wt/nacl23/examples/distill_si_sevennet/results-nacl/work/"
ideal = read(W + "nacl216.data", format="lammps-data", atom_style="atomic")
final = read("final.data", format="lammps-data", atom_style="atomic")
out = {}
for name, spec in (("student", W + "distill/student.pt"), ("teacher", "sevennet:7net-0")):
    calc = AtomfluxCalculator(spec, uncertainty=False)
    e = []
    for at in (ideal, final):
        at.calc = calc; e.append(at.get_potential_energy())
    out[name] = (e[1] - e[0], final.get_forces().copy())
    print(f"{name}: E(final) - E(ideal) = {e[1] - e[0]:.3f} eV", flush=True)
df = out["student"][1] - out["teacher"][1]
print("student vs teacher force-component RMSE on the final frame: %.1f meV/Å; teacher RMS force %.1f meV/Å"
      % (1000 * np.sqrt(np.mean(df ** 2)), 1000 * np.sqrt(np.mean(out["teacher"][1] ** 2))))
