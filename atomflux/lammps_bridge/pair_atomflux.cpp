// atomflux LAMMPS plugin: `pair_style atomflux` and `compute atomflux/uncertainty`.
//
// The pair style hands the atomflux model (in Python, through callbacks that
// atomflux.lammps_bridge registers) the local and ghost atoms and the pairs of
// a full neighbour list within the model cutoff, and takes back the per-atom
// energies of the local atoms and dE/dr for every pair.  Forces, the global and
// per-atom virials (two-body split for stress/atom, "receiver" centroid split
// for centroid/stress/atom and heat/flux) are accumulated here; ghost forces
// are reverse-communicated by LAMMPS (newton pair on).
//
// Built and cached by atomflux/lammps_bridge/plugin.py; loaded with `plugin load`.

#include "atom.h"
#include "comm.h"
#include "compute.h"
#include "error.h"
#include "force.h"
#include "lammps.h"
#include "memory.h"
#include "neigh_list.h"
#include "neighbor.h"
#include "pair.h"
#include "update.h"

#include <mpi.h>

#include <cmath>
#include <cstring>
#include <string>
#include <vector>

using namespace LAMMPS_NS;

extern "C" {

// Layouts mirrored by ctypes structures in atomflux/lammps_bridge/callbacks.py.
struct AtomfluxSetup {
  const char *model;      // model file or shipped model name
  const char *elements;   // one chemical symbol per LAMMPS type, space separated
  const char *options;    // pair_style arguments, space separated
  const char *units;      // LAMMPS unit style
  int ntypes;
  int rank;
  int nprocs;
  double cutoff;          // out: model cutoff, Angstrom
  int n_components;       // out: length of the uncertainty component vector
  long long handle;       // out: model handle for later calls
  char message[4096];     // out: error message when the call returns non-zero
};

struct AtomfluxCompute {
  long long handle;
  int nlocal;
  int nall;
  int npairs;
  int want_uncertainty;
  const double *x;            // [nall][3] positions, Angstrom
  const int *type;            // [nall] LAMMPS types (1-based)
  const int *tag;             // [nall] LAMMPS atom IDs (for error messages)
  const int *pairs;           // [npairs][2] (i local, j local or ghost)
  double *energy_atom;        // out [nlocal] eV
  double *pair_gradient;      // out [npairs][3] dE/dr_ij, eV/Angstrom, r_ij = x_j - x_i
  double *uncertainty_atom;   // out [nlocal] eV
  double *components;         // out [n_components]: sigma^2 = |sum over ranks|^2
  double energy;              // out: sum of local atomic energies, eV
  char message[4096];
};

typedef int (*atomflux_setup_fn)(AtomfluxSetup *);
typedef int (*atomflux_compute_fn)(AtomfluxCompute *);
typedef void (*atomflux_release_fn)(long long);

static atomflux_setup_fn setup_callback = nullptr;
static atomflux_compute_fn compute_callback = nullptr;
static atomflux_release_fn release_callback = nullptr;

void atomflux_set_callbacks(atomflux_setup_fn setup, atomflux_compute_fn compute, atomflux_release_fn release)
{
  setup_callback = setup;
  compute_callback = compute;
  release_callback = release;
}

int atomflux_callbacks_registered() { return setup_callback != nullptr; }

}    // extern "C"

static const char *NOT_REGISTERED =
    "pair_style atomflux: the atomflux model callbacks are not registered in this process; "
    "run the input with `atomflux lammps in.lammps` or create LAMMPS with "
    "atomflux.lammps_bridge.start_lammps()";

namespace LAMMPS_NS {

class PairAtomflux : public Pair {
 public:
  explicit PairAtomflux(LAMMPS *lmp) : Pair(lmp)
  {
    single_enable = 0;
    restartinfo = 0;
    one_coeff = 1;
    manybody_flag = 1;
    centroidstressflag = CENTROID_AVAIL;
    no_virial_fdotr_compute = 1;
  }

  ~PairAtomflux() override
  {
    if (handle >= 0 && release_callback) release_callback(handle);
    if (allocated) {
      memory->destroy(setflag);
      memory->destroy(cutsq);
    }
  }

  void settings(int narg, char **arg) override
  {
    options.clear();
    for (int k = 0; k < narg; k++) {
      if (k) options += " ";
      options += arg[k];
    }
  }

  void coeff(int narg, char **arg) override
  {
    const int ntypes = atom->ntypes;
    if (narg < 3 || strcmp(arg[0], "*") != 0 || strcmp(arg[1], "*") != 0)
      error->all(FLERR, "pair_coeff for pair_style atomflux must be: pair_coeff * * MODEL ELEMENT_OF_TYPE_1 ...");
    if (narg != 3 + ntypes)
      error->all(FLERR, "pair_coeff * * {} needs one element per atom type: {} type(s) defined, {} element(s) given",
                 arg[2], ntypes, narg - 3);
    if (!setup_callback) error->all(FLERR, NOT_REGISTERED);
    std::string elements;
    for (int k = 3; k < narg; k++) {
      if (k > 3) elements += " ";
      elements += arg[k];
    }
    if (!allocated) {
      allocated = 1;
      memory->create(setflag, ntypes + 1, ntypes + 1, "pair:setflag");
      memory->create(cutsq, ntypes + 1, ntypes + 1, "pair:cutsq");
    }
    if (handle >= 0 && release_callback) release_callback(handle);
    AtomfluxSetup setup{};
    setup.model = arg[2];
    setup.elements = elements.c_str();
    setup.options = options.c_str();
    setup.units = update->unit_style;
    setup.ntypes = ntypes;
    setup.rank = comm->me;
    setup.nprocs = comm->nprocs;
    if (setup_callback(&setup) != 0) error->all(FLERR, setup.message);
    handle = setup.handle;
    cutoff = setup.cutoff;
    n_components = setup.n_components;
    components.assign(n_components > 0 ? n_components : 1, 0.0);
    for (int i = 1; i <= ntypes; i++)
      for (int j = 1; j <= ntypes; j++) setflag[i][j] = 1;
  }

  void init_style() override
  {
    if (strcmp(update->unit_style, "metal") != 0)
      error->all(FLERR, "pair_style atomflux needs 'units metal' (eV, Angstrom, ps); this input uses units {}",
                 update->unit_style);
    if (force->newton_pair == 0) error->all(FLERR, "pair_style atomflux needs newton pair on");
    if (handle < 0) error->all(FLERR, "pair_style atomflux: no model set; use pair_coeff * * MODEL ELEMENTS...");
    neighbor->add_request(this, NeighConst::REQ_FULL);
  }

  double init_one(int, int) override { return cutoff; }

  void compute(int eflag, int vflag) override
  {
    ev_init(eflag, vflag);
    if (!compute_callback) error->one(FLERR, NOT_REGISTERED);
    const int nlocal = atom->nlocal;
    const int nall = nlocal + atom->nghost;
    double **x = atom->x;
    double **f = atom->f;
    const double cutsq_model = cutoff * cutoff;

    pairs.clear();
    for (int ii = 0; ii < list->inum; ii++) {
      const int i = list->ilist[ii];
      const int *jlist = list->firstneigh[i];
      for (int jj = 0; jj < list->numneigh[i]; jj++) {
        const int j = jlist[jj] & NEIGHMASK;
        const double dx = x[j][0] - x[i][0], dy = x[j][1] - x[i][1], dz = x[j][2] - x[i][2];
        if (dx * dx + dy * dy + dz * dz < cutsq_model) {
          pairs.push_back(i);
          pairs.push_back(j);
        }
      }
    }
    const int npairs = (int) (pairs.size() / 2);
    gradient.assign(3 * (size_t) npairs + 3, 0.0);
    energy_atom.assign((size_t) nlocal + 1, 0.0);
    uncertainty_local.assign((size_t) nlocal + 1, 0.0);
    std::fill(components.begin(), components.end(), 0.0);

    AtomfluxCompute call{};
    call.handle = handle;
    call.nlocal = nlocal;
    call.nall = nall;
    call.npairs = npairs;
    call.want_uncertainty = want_uncertainty;
    call.x = nall ? &x[0][0] : nullptr;
    call.type = atom->type;
    call.tag = atom->tag;
    call.pairs = pairs.data();
    call.energy_atom = energy_atom.data();
    call.pair_gradient = gradient.data();
    call.uncertainty_atom = uncertainty_local.data();
    call.components = components.data();
    if (compute_callback(&call) != 0) error->one(FLERR, call.message);

    for (int p = 0; p < npairs; p++) {
      const int i = pairs[2 * p], j = pairs[2 * p + 1];
      const double *g = &gradient[3 * (size_t) p];
      // E depends on r_ij = x_j - x_i: F_i = +g, F_j = -g
      f[i][0] += g[0]; f[i][1] += g[1]; f[i][2] += g[2];
      f[j][0] -= g[0]; f[j][1] -= g[1]; f[j][2] -= g[2];
      const double delx = x[i][0] - x[j][0], dely = x[i][1] - x[j][1], delz = x[i][2] - x[j][2];
      if (vflag_either) ev_tally_xyz(i, j, nlocal, 1, 0.0, 0.0, g[0], g[1], g[2], delx, dely, delz);
      if (cvflag_atom) {
        // receiver split: the virial of pair (i -> j) goes to j, which makes
        // compute heat/flux exact for energies local to the pair's first atom
        double *c = cvatom[j];
        c[0] += delx * g[0]; c[1] += dely * g[1]; c[2] += delz * g[2];
        c[3] += delx * g[1]; c[4] += delx * g[2]; c[5] += dely * g[2];
        c[6] += dely * g[0]; c[7] += delz * g[0]; c[8] += delz * g[1];
      }
    }
    if (eflag_global) eng_vdwl += call.energy;
    if (eflag_atom)
      for (int i = 0; i < nlocal; i++) eatom[i] += energy_atom[i];

    if (want_uncertainty) {
      std::vector<double> total(components.size(), 0.0);
      MPI_Allreduce(components.data(), total.data(), (int) components.size(), MPI_DOUBLE, MPI_SUM, world);
      double squared = 0.0;
      for (double c : total) squared += c * c;
      uncertainty_total = std::sqrt(squared);
      uncertainty_step = update->ntimestep;
    }
  }

  // read by compute atomflux/uncertainty
  int want_uncertainty = 0;
  double uncertainty_total = 0.0;
  bigint uncertainty_step = -1;
  std::vector<double> uncertainty_local;

 private:
  std::string options;
  long long handle = -1;
  double cutoff = 0.0;
  int n_components = 0;
  std::vector<int> pairs;
  std::vector<double> gradient, energy_atom, components;
};

class ComputeAtomfluxUncertainty : public Compute {
 public:
  ComputeAtomfluxUncertainty(LAMMPS *lmp, int narg, char **arg) : Compute(lmp, narg, arg)
  {
    if (narg != 3) error->all(FLERR, "compute atomflux/uncertainty takes no arguments: compute ID group atomflux/uncertainty");
    scalar_flag = 1;
    extscalar = 1;
    peratom_flag = 1;
    size_peratom_cols = 0;
  }

  ~ComputeAtomfluxUncertainty() override { memory->destroy(values); }

  void init() override
  {
    pair = dynamic_cast<PairAtomflux *>(force->pair_match("^atomflux", 0));
    if (!pair) error->all(FLERR, "compute atomflux/uncertainty needs pair_style atomflux");
    pair->want_uncertainty = 1;
  }

  double compute_scalar() override
  {
    invoked_scalar = update->ntimestep;
    check_step();
    scalar = pair->uncertainty_total;
    return scalar;
  }

  void compute_peratom() override
  {
    invoked_peratom = update->ntimestep;
    check_step();
    if (atom->nmax > nmax) {
      memory->destroy(values);
      nmax = atom->nmax;
      memory->create(values, nmax, "atomflux/uncertainty:values");
      vector_atom = values;
    }
    const int nlocal = atom->nlocal;
    const int *mask = atom->mask;
    for (int i = 0; i < nlocal; i++)
      values[i] = (mask[i] & groupbit && i < (int) pair->uncertainty_local.size()) ? pair->uncertainty_local[i] : 0.0;
  }

  double memory_usage() override { return (double) nmax * sizeof(double); }

 private:
  void check_step()
  {
    if (pair->uncertainty_step != update->ntimestep)
      error->all(FLERR, "compute atomflux/uncertainty: no uncertainty for step {}; it is computed together with "
                 "the forces, so use it on steps where forces are computed (thermo, dump, fix halt)",
                 update->ntimestep);
  }

  PairAtomflux *pair = nullptr;
  double *values = nullptr;
  int nmax = 0;
};

}    // namespace LAMMPS_NS

// ---- plugin registration (layout of lammpsplugin_t from the LAMMPS plugin documentation)
extern "C" {
typedef void *(lammpsplugin_factory1)(void *);
typedef void *(lammpsplugin_factory2)(void *, int, char **);
typedef struct {
  const char *version;
  const char *style;
  const char *name;
  const char *info;
  const char *author;
  union {
    lammpsplugin_factory1 *v1;
    lammpsplugin_factory2 *v2;
  } creator;
  void *handle;
} lammpsplugin_t;
typedef void (*lammpsplugin_regfunc)(lammpsplugin_t *, void *);

static void *pair_creator(void *lmp) { return new PairAtomflux((LAMMPS *) lmp); }
static void *compute_creator(void *lmp, int narg, char **arg)
{
  return new ComputeAtomfluxUncertainty((LAMMPS *) lmp, narg, arg);
}

void lammpsplugin_init(void *lmp, void *handle, void *regfunc)
{
  auto reg = (lammpsplugin_regfunc) regfunc;
  lammpsplugin_t plugin{};
  plugin.version = ((LAMMPS *) lmp)->version;
  plugin.author = "atomflux developers";
  plugin.handle = handle;

  plugin.style = "pair";
  plugin.name = "atomflux";
  plugin.info = "atomflux machine-learning potential (many-body, through Python callbacks)";
  plugin.creator.v1 = (lammpsplugin_factory1 *) &pair_creator;
  (*reg)(&plugin, lmp);

  plugin.style = "compute";
  plugin.name = "atomflux/uncertainty";
  plugin.info = "energy uncertainty of pair_style atomflux: global scalar and per-atom, eV";
  plugin.creator.v2 = (lammpsplugin_factory2 *) &compute_creator;
  (*reg)(&plugin, lmp);
}
}
