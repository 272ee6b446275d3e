// atomflux LAMMPS plugin: `pair_style atomflux` and `compute atomflux/uncertainty`.
//
// Each force call, the pair style filters LAMMPS's neighbour list (local and ghost
// atoms, cutoff + skin; a full list, or a half list for a model that is a sum of
// symmetric pair terms) down to the model cutoff and hands the atomflux model (in
// Python, through callbacks that atomflux.lammps_bridge registers) the pairs and
// their vectors r_ij = x_j - x_i, in buffers that stay allocated across steps
// (Python views them without copying).  The model sees the local atoms and one
// stand-in atom per type for all ghost neighbours: a strictly local model needs
// only the pair vectors and the neighbours' species.  Python hands back pointers
// to the per-atom energies and to dE/dr for every pair.  Forces and the global
// virial (F·r over local + ghost atoms) are accumulated here every step; per-atom
// energies, per-atom virials (two-body split for stress/atom, "receiver" centroid
// split for centroid/stress/atom and heat/flux) and the energy uncertainty only on
// the steps where LAMMPS asks for them (eflag_atom, vflag_atom, cvflag_atom; the
// steps a compute atomflux/uncertainty is invoked on).  Ghost forces are
// reverse-communicated by LAMMPS (newton pair on).
//
// A message-passing model (not strictly local: an atom's energy reaches `interaction_range`,
// layers x cutoff) cannot be fed pairs with ghost stand-ins.  It gets whole systems instead:
// - one MPI rank: the local atoms and the periodic box; atomflux builds its own periodic
//   neighbour list (cell shifts) and returns forces on the local atoms only, the virial and
//   per-atom (centroid) virials from the model -- exact, no ghost replication;
// - several ranks, a model that exposes its message-passing layers (per-layer halo): the local
//   atoms and LAMMPS's ordinary ghost shell of ONE cutoff (+ skin); between layers Python calls
//   atomflux_exchange, which refreshes the ghosts' node features from their owners by forward
//   communication and, in the backward pass, sums the gradients with respect to ghost features
//   into the owners by reverse communication (pack/unpack_forward/reverse_comm below);
// - several ranks, an opaque model: the local atoms and a ghost shell of the full interaction
//   range (`comm_modify cutoff`), as a non-periodic cluster.
// In both multi-rank modes the model's energy is that of the local atoms, whose gradient puts
// forces on ghosts, reverse-communicated by LAMMPS.
// The virial comes from the model in both cases (no F.r over LAMMPS's atoms).
//
// Built and cached by atomflux/lammps_bridge/plugin.py; loaded with `plugin load`.

#include "atom.h"
#include "comm.h"
#include "compute.h"
#include "domain.h"
#include "error.h"
#include "force.h"
#include "lammps.h"
#include "memory.h"
#include "modify.h"
#include "neigh_list.h"
#include "neighbor.h"
#include "pair.h"
#include "update.h"
#include "utils.h"

#include <mpi.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

using namespace LAMMPS_NS;

extern "C" {

// Layouts mirrored by ctypes structures in atomflux/lammps_bridge/callbacks.py.
struct AtomfluxSetup {
  const char *model;          // model file or shipped model name
  const char *elements;       // one chemical symbol per LAMMPS type, space separated
  const char *options;        // pair_style arguments, space separated
  const char *units;          // LAMMPS unit style
  int ntypes;
  int rank;
  int nprocs;
  int64_t *numbers_of_type;   // out [ntypes + 1]: atomic number of each type (index 0 unused)
  double cutoff;              // out: model cutoff, Angstrom
  double min_distance;        // out: closer atoms are refused as overlapping, Angstrom
  int pairwise;               // out: 1 if the energy is a sum of symmetric pair terms and nothing
                              //      else (no uncertainty): a half neighbour list will do
  int n_components;           // out: length of the uncertainty component vector
  int whole_system;           // out: 0 = strictly local (pairs, ghost stand-ins); 1 = the model needs
                              //      whole systems (message passing): periodic box on one rank,
                              //      a ghost shell of the interaction range on several
  double interaction_range;   // out: how far an atom's energy reaches, Angstrom (whole_system only)
  int halo;                   // out: 1 = several ranks exchange node features between layers (ghost
                              //      shell of one cutoff); 0 = a ghost shell of the whole reach
  int halo_width;             // out: doubles per atom in one communication (wider features go in blocks)
  long long handle;           // out: model handle for later calls
  char message[4096];         // out: error message when the call returns non-zero
};

struct AtomfluxCompute {
  long long handle;
  int nlocal;                 // model atoms 0 .. nlocal-1 are LAMMPS's local atoms
  int natoms;                 // nlocal + ntypes: then one ghost stand-in per type
  int npairs;
  int want_uncertainty;       // this step: per-atom sigma and this rank's components
  long long atom_capacity;    // allocated lengths of the buffers below (they move only when they grow)
  long long pair_capacity;
  const int64_t *numbers;     // [natoms] atomic numbers
  const int64_t *pairs;       // [npairs][2] model atoms (i local, j local or stand-in)
  const double *vectors;      // [npairs][3] r_ij = x_j - x_i, Angstrom
  double *uncertainty_atom;   // out [nlocal] eV (only when want_uncertainty)
  double *components;         // out [n_components]: sigma^2 = |sum over ranks|^2
  const double *energy_atom;  // out: Python's [natoms] per-atom energies, eV, valid until the next call
  const double *pair_gradient;// out: Python's [npairs][3] dE/dr_ij, eV/Angstrom, valid until the next call
  char message[4096];
};

// One force call of a whole-system model (message passing).
struct AtomfluxSystem {
  long long handle;
  int nlocal;                 // atoms 0 .. nlocal-1 are LAMMPS's local atoms, whose energies count
  int natoms;                 // atoms handed over: nlocal (periodic box) or nlocal + nghost (ghost shell)
  int periodic[3];            // periodicity of the box along a, b, c (all 0 for a ghost shell)
  double cell[9];             // box vectors a, b, c as rows (LAMMPS's lower-triangular box), Angstrom
  double origin[3];           // boxlo, Angstrom
  int want_virials;           // this step: per-atom virials (two-body split, stress/atom)
  int want_centroid;          // this step: per-atom centroid virials (centroid/stress/atom, heat/flux)
  int want_uncertainty;
  const double *positions;    // [natoms][3] Angstrom (atom->x)
  const int64_t *numbers;     // [natoms] atomic numbers
  const int64_t *ids;         // [natoms] atom IDs (for messages)
  double *uncertainty_atom;   // out [nlocal] eV (only when want_uncertainty)
  double *components;         // out [n_components]
  const double *energy_atom;  // out: [natoms] eV (only the first nlocal count)
  const double *forces;       // out: [natoms][3] eV/Angstrom
  const double *virial;       // out: [9] W = -sum g (x) r, eV, row-major
  const double *virials;      // out: [natoms][9] eV (want_virials)
  const double *centroid;     // out: [natoms][9] eV (want_centroid)
  void *pair;                 // the pair style, for atomflux_exchange (per-layer halo only)
  char message[4096];
};

typedef int (*atomflux_setup_fn)(AtomfluxSetup *);
typedef int (*atomflux_compute_fn)(AtomfluxCompute *);
typedef int (*atomflux_system_fn)(AtomfluxSystem *);
typedef void (*atomflux_release_fn)(long long);

static atomflux_setup_fn setup_callback = nullptr;
static atomflux_compute_fn compute_callback = nullptr;
static atomflux_system_fn system_callback = nullptr;
static atomflux_release_fn release_callback = nullptr;

void atomflux_set_callbacks(atomflux_setup_fn setup, atomflux_compute_fn compute, atomflux_system_fn system,
                            atomflux_release_fn release)
{
  setup_callback = setup;
  compute_callback = compute;
  system_callback = system;
  release_callback = release;
}

int atomflux_callbacks_registered() { return setup_callback != nullptr; }

// Called from Python during a whole-system call (per-layer halo): `data` holds [nlocal + nghost][width]
// doubles; reverse = 0 copies the owners' rows into their ghost rows, reverse = 1 adds the ghost rows
// into their owners' rows (the ghost rows are left as they were).
void atomflux_exchange(void *pair, double *data, int width, int reverse);

}    // extern "C"

static const char *NOT_REGISTERED =
    "pair_style atomflux: the atomflux model callbacks are not registered in this process; "
    "run the input with `atomflux lammps in.lammps` or create LAMMPS with "
    "atomflux.lammps_bridge.start_lammps()";

static const char *UNCERTAINTY_STYLE = "atomflux/uncertainty";

// Grow a buffer geometrically (its address then changes, which the Python views notice).
template <typename T> static void reserve_at_least(std::vector<T> &buffer, size_t size)
{
  if (buffer.size() < size) buffer.resize(size + size / 2 + 16);
}

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
    handle = -1;
    numbers_of_type.assign(ntypes + 1, 0);
    AtomfluxSetup setup{};
    setup.model = arg[2];
    setup.elements = elements.c_str();
    setup.options = options.c_str();
    setup.units = update->unit_style;
    setup.ntypes = ntypes;
    setup.rank = comm->me;
    setup.nprocs = comm->nprocs;
    setup.numbers_of_type = numbers_of_type.data();
    if (setup_callback(&setup) != 0) error->all(FLERR, setup.message);
    handle = setup.handle;
    cutoff = setup.cutoff;
    min_distance = setup.min_distance;
    pairwise = setup.pairwise;
    n_components = setup.n_components;
    whole_system = setup.whole_system != 0;
    interaction_range = setup.interaction_range;
    halo = setup.halo != 0;
    comm_forward = comm_reverse = halo ? std::max(setup.halo_width, 1) : 0;
    reported_ghosts = false;
    // a whole-system model gives its own virial: F.r over LAMMPS's atoms would use unwrapped
    // positions of atoms whose forces came from periodic images
    no_virial_fdotr_compute = whole_system ? 1 : 0;
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
    if (atom->ntypes + 1 != (int) numbers_of_type.size())
      error->all(FLERR, "pair_style atomflux: the number of atom types changed since pair_coeff; repeat pair_coeff");
    if (whole_system && force->pair != this)
      error->all(FLERR, "pair_style atomflux: a message-passing model cannot be a sub-style of pair_style hybrid "
                 "(it takes whole systems, all types, and gives its own virial); use it as the only pair style");
    if (whole_system && comm->nprocs > 1 && !halo) {
      // the local atoms' energies must see every atom within the interaction range
      const double needed = interaction_range + neighbor->skin;
      if (comm->mode != Comm::SINGLE || comm->cutghostuser < needed)
        error->all(FLERR, "pair_style atomflux: this message-passing model reaches {:.6g} Å, so on {} MPI ranks "
                   "every rank needs ghost atoms out to {:.6g} Å (reach + neighbor skin); add "
                   "`comm_modify cutoff {:.6g}` before the run, or run on one MPI rank, which needs no ghosts",
                   interaction_range, comm->nprocs, needed, std::ceil(needed * 100.0) / 100.0);
    }
    // a sum of symmetric pair terms needs each pair once (half the work); a many-body
    // model needs all pairs of each atom; a whole-system model builds its own (the
    // cheapest list is requested, unused)
    neighbor->add_request(this, pairwise || whole_system ? NeighConst::REQ_DEFAULT : NeighConst::REQ_FULL);
  }

  double init_one(int, int) override { return cutoff; }

  void compute(int eflag, int vflag) override
  {
    ev_init(eflag, vflag);
    if (whole_system) {
      compute_whole_system();
      return;
    }
    if (!compute_callback) error->one(FLERR, NOT_REGISTERED);
    const int nlocal = atom->nlocal, ntypes = atom->ntypes;
    const bool want = uncertainty_requested();
    const int npairs = gather_pairs();
    // per-atom energies of a pairwise model: each pair is its own model atom, which gets
    // half the pair term; both atoms of the pair get that half
    const bool pair_atoms_mode = pairwise && eflag_atom;
    if (pair_atoms_mode) make_pairs_atoms(npairs);

    AtomfluxCompute call{};
    call.handle = handle;
    call.nlocal = nlocal;
    call.natoms = (pair_atoms_mode ? npairs : nlocal) + ntypes;
    call.npairs = npairs;
    call.want_uncertainty = want;
    call.atom_capacity = (long long) numbers.size();
    call.pair_capacity = (long long) pair_j.size();
    call.numbers = numbers.data();
    call.pairs = model_pairs.data();
    call.vectors = vectors.data();
    reserve_at_least(uncertainty_local, (size_t) nlocal + 1);
    std::fill(components.begin(), components.end(), 0.0);
    call.uncertainty_atom = uncertainty_local.data();
    call.components = components.data();
    if (call.natoms > ntypes && compute_callback(&call) != 0) error->one(FLERR, call.message);

    if (call.natoms > ntypes) {
      accumulate_forces(call.pair_gradient, npairs);
      if (pair_atoms_mode) accumulate_pair_energies(call.energy_atom, npairs);
      else accumulate_energies(call.energy_atom, nlocal);
    }
    if (vflag_fdotr) virial_fdotr_compute();
    if (want) reduce_uncertainty();
  }

  // read by compute atomflux/uncertainty
  bool has_uncertainty() const { return n_components > 0; }
  double uncertainty_total = 0.0;
  bigint uncertainty_step = -1;
  std::vector<double> uncertainty_local;

 private:
  // Is any compute atomflux/uncertainty invoked on this step (thermo, dump, fix halt, fix ave/...)?
  // Such computes store their invocation steps (timeflag), as compute pe/atom does for eflag_atom.
  bool uncertainty_requested()
  {
    bool requested = false;
    for (Compute *compute : modify->get_compute_list())
      if (strcmp(compute->style, UNCERTAINTY_STYLE) == 0 && compute->matchstep(update->ntimestep)) requested = true;
    return requested;
  }

  // A message-passing model on this rank's atoms: the local atoms in the periodic box (one
  // rank) or the local atoms and the whole ghost shell (several ranks).
  void compute_whole_system()
  {
    if (!system_callback) error->one(FLERR, NOT_REGISTERED);
    const int nlocal = atom->nlocal, nprocs = comm->nprocs;
    const bool ghost_shell = nprocs > 1;
    const int natoms = ghost_shell ? nlocal + atom->nghost : nlocal;
    if (ghost_shell && !reported_ghosts) report_ghosts();
    const bool want = uncertainty_requested();
    const int *type = atom->type;
    const tagint *tag = atom->tag;
    double **x = atom->x;
    reserve_at_least(numbers, (size_t) natoms + 1);
    reserve_at_least(ids, (size_t) natoms + 1);
    for (int i = 0; i < natoms; i++) {
      if (!std::isfinite(x[i][0]) || !std::isfinite(x[i][1]) || !std::isfinite(x[i][2]))
        error->one(FLERR, "pair_style atomflux: NaN or inf position of atom ID {}", tag[i]);
      numbers[i] = numbers_of_type[type[i]];
      ids[i] = tag[i];
    }
    AtomfluxSystem call{};
    call.handle = handle;
    call.nlocal = nlocal;
    call.natoms = natoms;
    const int periodic[3] = {domain->xperiodic, domain->yperiodic, domain->zperiodic};
    for (int k = 0; k < 3; k++) call.periodic[k] = ghost_shell ? 0 : periodic[k];
    const double cell[9] = {domain->xprd, 0.0, 0.0, domain->xy, domain->yprd, 0.0,
                            domain->xz, domain->yz, domain->zprd};
    std::copy(cell, cell + 9, call.cell);
    std::copy(domain->boxlo, domain->boxlo + 3, call.origin);
    call.want_virials = vflag_atom;
    call.want_centroid = cvflag_atom;
    call.want_uncertainty = want;
    call.positions = natoms ? &x[0][0] : nullptr;
    call.numbers = numbers.data();
    call.ids = ids.data();
    reserve_at_least(uncertainty_local, (size_t) nlocal + 1);
    std::fill(components.begin(), components.end(), 0.0);
    call.uncertainty_atom = uncertainty_local.data();
    call.components = components.data();
    call.pair = this;
    // with the halo every rank takes part in every layer's communication, with or without atoms
    if (nlocal > 0 || halo) {
      if (system_callback(&call) != 0) error->one(FLERR, call.message);
      double **f = atom->f;
      for (int i = 0; i < natoms; i++)
        for (int a = 0; a < 3; a++) f[i][a] += call.forces[3 * i + a];
      if (eflag_global)
        for (int i = 0; i < nlocal; i++) eng_vdwl += call.energy_atom[i];
      if (eflag_atom)
        for (int i = 0; i < nlocal; i++) eatom[i] += call.energy_atom[i];
      // LAMMPS's virial component xy is sum x f_y, atomflux's W_yx (W = -sum g (x) r)
      static const int VIRIAL[6] = {0, 4, 8, 3, 6, 7};
      static const int CENTROID[9] = {0, 4, 8, 1, 2, 5, 3, 6, 7};
      if (vflag_global)
        for (int k = 0; k < 6; k++) virial[k] += call.virial[VIRIAL[k]];
      if (vflag_atom)
        for (int i = 0; i < natoms; i++)
          for (int k = 0; k < 6; k++) vatom[i][k] += call.virials[9 * (size_t) i + VIRIAL[k]];
      // the receiver virials of the heat flux, J_pot = sum_k W~_k v_k: xy = W~_xy
      if (cvflag_atom)
        for (int i = 0; i < natoms; i++)
          for (int k = 0; k < 9; k++) cvatom[i][k] += call.centroid[9 * (size_t) i + CENTROID[k]];
    }
    if (want) reduce_uncertainty();
  }

  // Once per model: which multi-rank mode runs, how many ghost atoms it costs, and what avoids them.
  void report_ghosts()
  {
    const double mine[2] = {(double) atom->nlocal, (double) atom->nghost};
    double total[2] = {0.0, 0.0};
    MPI_Allreduce(mine, total, 2, MPI_DOUBLE, MPI_SUM, world);
    reported_ghosts = true;
    if (comm->me != 0) return;
    if (halo)
      utils::logmesg(lmp, "pair_style atomflux: per-layer halo exchange on {} MPI ranks: {:.0f} ghost atoms of one "
                     "cutoff ({:.6g} Å + skin) for {:.0f} local atoms ({:.1f} ghosts per local atom); the ghosts' "
                     "node features are refreshed from their owners between message-passing layers\n",
                     comm->nprocs, total[1], cutoff, total[0], total[1] / std::max(total[0], 1.0));
    else
      utils::logmesg(lmp, "pair_style atomflux: full-shell fallback: the message-passing model reaches {:.6g} Å and "
                     "does not expose its layers, so on {} MPI ranks it evaluates {:.0f} ghost atoms for {:.0f} local "
                     "atoms ({:.1f} ghosts per local atom). Energies and forces are exact, but the ghosts cost model "
                     "time: run on one MPI rank (periodic message passing, no ghosts), or use an adapter that exposes "
                     "its layers (SevenNet, MACE: per-layer halo of one cutoff)\n",
                     interaction_range, comm->nprocs, total[1], total[0], total[1] / std::max(total[0], 1.0));
  }

 public:
  // Per-layer halo: refresh ghost rows from owners (forward) or sum ghost rows into owners
  // (reverse), `width` doubles per atom, in blocks of at most comm_forward columns.
  void exchange(double *data, int width, bool reverse)
  {
    halo_data = data;
    halo_stride = width;
    for (halo_column = 0; halo_column < width; halo_column += comm_forward) {
      halo_block = std::min(comm_forward, width - halo_column);
      if (reverse) comm->reverse_comm(this, halo_block);
      else comm->forward_comm(this, halo_block);
    }
    halo_data = nullptr;
  }

  int pack_forward_comm(int n, int *list, double *buf, int, int *) override
  {
    int m = 0;
    for (int k = 0; k < n; k++) {
      const double *row = halo_data + (size_t) list[k] * halo_stride + halo_column;
      for (int c = 0; c < halo_block; c++) buf[m++] = row[c];
    }
    return m;
  }

  void unpack_forward_comm(int n, int first, double *buf) override
  {
    int m = 0;
    for (int i = first; i < first + n; i++) {
      double *row = halo_data + (size_t) i * halo_stride + halo_column;
      for (int c = 0; c < halo_block; c++) row[c] = buf[m++];
    }
  }

  int pack_reverse_comm(int n, int first, double *buf) override
  {
    int m = 0;
    for (int i = first; i < first + n; i++) {
      const double *row = halo_data + (size_t) i * halo_stride + halo_column;
      for (int c = 0; c < halo_block; c++) buf[m++] = row[c];
    }
    return m;
  }

  void unpack_reverse_comm(int n, int *list, double *buf) override
  {
    int m = 0;
    for (int k = 0; k < n; k++) {
      double *row = halo_data + (size_t) list[k] * halo_stride + halo_column;
      for (int c = 0; c < halo_block; c++) row[c] += buf[m++];
    }
  }

 private:

  // Pairs of the neighbour list within the model cutoff: LAMMPS indices, vectors, and the
  // model's view (local atoms, then one stand-in per type for ghost neighbours).
  int gather_pairs()
  {
    const int nlocal = atom->nlocal, ntypes = atom->ntypes;
    double **x = atom->x;
    const int *type = atom->type;
    const tagint *tag = atom->tag;
    const double cutsq_model = cutoff * cutoff;

    reserve_at_least(numbers, (size_t) nlocal + ntypes);
    for (int i = 0; i < nlocal; i++) {
      if (!std::isfinite(x[i][0]) || !std::isfinite(x[i][1]) || !std::isfinite(x[i][2]))
        error->one(FLERR, "pair_style atomflux: NaN or inf position of atom ID {}", tag[i]);
      numbers[i] = numbers_of_type[type[i]];
    }
    for (int t = 1; t <= ntypes; t++) numbers[nlocal + t - 1] = numbers_of_type[t];

    // every entry is written at the next free slot, which advances only for kept pairs:
    // no branch on the cutoff test, whose outcome is unpredictable (room for one extra entry)
    size_t bound = 1;
    for (int ii = 0; ii < list->inum; ii++) bound += list->numneigh[list->ilist[ii]];
    reserve_at_least(pair_i, bound);
    reserve_at_least(pair_j, pair_i.size());
    reserve_at_least(model_pairs, 2 * pair_i.size());
    reserve_at_least(vectors, 3 * pair_i.size());

    int npairs = 0, closest_pair = -1;
    double closest = std::min(min_distance * min_distance, cutsq_model);
    const double *xs = &x[0][0];
    int *first = pair_i.data(), *second = pair_j.data();
    int64_t *model = model_pairs.data();
    double *r = vectors.data();
    for (int ii = 0; ii < list->inum; ii++) {
      const int i = list->ilist[ii];
      const double xi = xs[3 * i], yi = xs[3 * i + 1], zi = xs[3 * i + 2];
      const int *jlist = list->firstneigh[i];
      const int jnum = list->numneigh[i];
      for (int jj = 0; jj < jnum; jj++) {
        const int j = jlist[jj] & NEIGHMASK;
        const double dx = xs[3 * j] - xi, dy = xs[3 * j + 1] - yi, dz = xs[3 * j + 2] - zi;
        const double rsq = dx * dx + dy * dy + dz * dz;
        first[npairs] = i;
        second[npairs] = j;
        model[2 * npairs] = i;
        model[2 * npairs + 1] = j < nlocal ? j : nlocal + type[j] - 1;
        r[3 * npairs] = dx;
        r[3 * npairs + 1] = dy;
        r[3 * npairs + 2] = dz;
        if (rsq < closest) {    // (rarely true, so well predicted) a kept pair: closest <= cutoff^2
          closest = rsq;
          closest_pair = npairs;
        }
        npairs += rsq < cutsq_model;
      }
    }
    if (closest_pair >= 0)
      error->one(FLERR, "pair_style atomflux: atoms with IDs {} and {} overlap: distance {:.3g} Å < {} Å",
                 tag[first[closest_pair]], tag[second[closest_pair]], std::sqrt(closest), min_distance);
    return npairs;
  }

  // Model atoms for per-atom energies of a pairwise model: pair p is atom p (species of its
  // first atom), its second atom a stand-in of its type; stand-ins follow the pairs.
  void make_pairs_atoms(int npairs)
  {
    const int *type = atom->type;
    reserve_at_least(numbers, (size_t) npairs + atom->ntypes);
    for (int p = 0; p < npairs; p++) {
      numbers[p] = numbers_of_type[type[pair_i[p]]];
      model_pairs[2 * p] = p;
      model_pairs[2 * p + 1] = npairs + type[pair_j[p]] - 1;
    }
    for (int t = 1; t <= atom->ntypes; t++) numbers[npairs + t - 1] = numbers_of_type[t];
  }

  // F_i = +g, F_j = -g for E(r_ij), r_ij = x_j - x_i; per-atom virials only when LAMMPS asks.
  // A pairwise model saw each pair term once, half of it: the gradients count twice.
  void accumulate_forces(const double *gradient, int npairs)
  {
    double **f = atom->f;
    const int nlocal = atom->nlocal;
    const double *r = vectors.data();
    const double weight = pairwise ? 2.0 : 1.0;
    const bool tally = vflag_global || vflag_atom;    // vflag_global only without F·r (e.g. pair hybrid)
    for (int p = 0; p < npairs; p++) {
      const int i = pair_i[p], j = pair_j[p];
      const double *gp = gradient + 3 * (size_t) p;
      const double g[3] = {weight * gp[0], weight * gp[1], weight * gp[2]};
      f[i][0] += g[0]; f[i][1] += g[1]; f[i][2] += g[2];
      f[j][0] -= g[0]; f[j][1] -= g[1]; f[j][2] -= g[2];
      const double delx = -r[3 * p], dely = -r[3 * p + 1], delz = -r[3 * p + 2];
      if (tally) ev_tally_xyz(i, j, nlocal, 1, 0.0, 0.0, g[0], g[1], g[2], delx, dely, delz);
      if (cvflag_atom) {
        // receiver split: the virial of pair (i -> j) goes to j, which makes compute
        // heat/flux exact for energies local to the pair's first atom; a symmetric pair
        // term splits evenly, as the two receiver halves of its two full-list entries
        const double v[9] = {delx * g[0], dely * g[1], delz * g[2], delx * g[1], delx * g[2],
                             dely * g[2], dely * g[0], delz * g[0], delz * g[1]};
        if (pairwise) {
          for (int k = 0; k < 9; k++) {
            cvatom[i][k] += 0.5 * v[k];
            cvatom[j][k] += 0.5 * v[k];
          }
        } else {
          for (int k = 0; k < 9; k++) cvatom[j][k] += v[k];
        }
      }
    }
  }

  // Energies of the local atoms (a pairwise model's count twice: each pair term was seen once).
  void accumulate_energies(const double *energy_atom, int nlocal)
  {
    if (eflag_global) {
      double total = 0.0;
      for (int i = 0; i < nlocal; i++) total += energy_atom[i];
      eng_vdwl += (pairwise ? 2.0 : 1.0) * total;
    }
    if (eflag_atom)
      for (int i = 0; i < nlocal; i++) eatom[i] += energy_atom[i];
  }

  // Energies of the pairs as model atoms (half a pair term each): one half to each atom;
  // the halves of ghosts are summed into their owners by LAMMPS (newton on).
  void accumulate_pair_energies(const double *energy_pair, int npairs)
  {
    double total = 0.0;
    for (int p = 0; p < npairs; p++) {
      total += energy_pair[p];
      eatom[pair_i[p]] += energy_pair[p];
      eatom[pair_j[p]] += energy_pair[p];
    }
    if (eflag_global) eng_vdwl += 2.0 * total;
  }

  void reduce_uncertainty()
  {
    std::vector<double> total(components.size(), 0.0);
    MPI_Allreduce(components.data(), total.data(), (int) components.size(), MPI_DOUBLE, MPI_SUM, world);
    double squared = 0.0;
    for (double c : total) squared += c * c;
    uncertainty_total = std::sqrt(squared);
    uncertainty_step = update->ntimestep;
  }

  std::string options;
  long long handle = -1;
  double cutoff = 0.0, min_distance = 0.0;
  int n_components = 0;
  bool pairwise = false;    // energy = sum of symmetric pair terms, no uncertainty: half neighbour list
  bool whole_system = false;    // message passing: whole systems (periodic box, or ghost shell under MPI)
  double interaction_range = 0.0;
  bool halo = false;    // several ranks, a layer-stack model: ghost shell of one cutoff, features exchanged
  double *halo_data = nullptr;    // the array being exchanged: [nlocal + nghost][halo_stride]
  int halo_stride = 0, halo_column = 0, halo_block = 0;
  bool reported_ghosts = false;
  std::vector<int64_t> ids;
  std::vector<int64_t> numbers_of_type;
  // buffers viewed by Python, kept across steps
  std::vector<int64_t> numbers, model_pairs;
  std::vector<double> vectors, components;
  std::vector<int> pair_i, pair_j;    // LAMMPS indices of each pair's atoms (j local or ghost)
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
    timeflag = 1;    // LAMMPS records the steps it will be invoked on; the pair style computes it only then
  }

  ~ComputeAtomfluxUncertainty() override { memory->destroy(values); }

  void init() override
  {
    pair = dynamic_cast<PairAtomflux *>(force->pair_match("^atomflux", 0));
    if (!pair) error->all(FLERR, "compute atomflux/uncertainty needs pair_style atomflux");
    if (!pair->has_uncertainty())
      error->all(FLERR, "compute atomflux/uncertainty: this model has no uncertainty; use a shallow ensemble "
                 "or add LLPR (atomflux llpr / atomflux ensemble)");
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

void atomflux_exchange(void *pair, double *data, int width, int reverse)
{
  static_cast<PairAtomflux *>(pair)->exchange(data, width, reverse != 0);
}

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
