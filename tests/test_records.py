"""Runs are records: resume only into the same run, never overwrite another result."""

import json

import pytest
import torch
from ase.build import bulk

from atomflux.models import LennardJones
from atomflux.records import RunMismatch, claim_result, fingerprint, model_record, open_run


def test_resume_only_the_same_run(tmp_path):
    folder = tmp_path / "run"
    model = model_record("lj.pt", LennardJones(3.4, 0.01, 8.5))
    params = {"temperature": 300.0, "timestep": 2.0, "seed": 0}
    assert open_run(folder, "md", params, model, info={"checkpoint": 100}) is False
    (folder / "flux.npz").write_bytes(b"data")
    assert open_run(folder, "md", dict(params), model, info={"checkpoint": 500}) is True   # info is not compared
    with pytest.raises(RunMismatch, match=r"temperature: 300.0 → 600.0.*timestep: 2.0 → 1.0.*--restart"):
        open_run(folder, "md", {**params, "temperature": 600.0, "timestep": 1.0}, model)
    other = model_record("lj2.pt", LennardJones(3.4, 0.02, 8.5))
    with pytest.raises(RunMismatch, match="model: lj.pt"):
        open_run(folder, "md", params, other)
    with pytest.raises(RunMismatch, match="command: md → kappa"):
        open_run(folder, "kappa", params, model)
    assert (folder / "flux.npz").read_bytes() == b"data"                                    # nothing touched
    assert open_run(folder, "md", {**params, "temperature": 600.0}, model, restart=True) is False
    moved = [p for p in tmp_path.iterdir() if p.name.startswith("run.old-")]
    assert len(moved) == 1 and (moved[0] / "flux.npz").read_bytes() == b"data"
    assert json.loads((folder / "run.json").read_text())["parameters"]["temperature"] == 600.0


def test_tuples_and_lists_compare_equal_and_unrecorded_folders_are_refused(tmp_path):
    open_run(tmp_path / "a", "kappa", {"mesh": (11, 11, 11)})
    assert open_run(tmp_path / "a", "kappa", {"mesh": [11, 11, 11]}) is True
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "notes.txt").write_text("mine")
    with pytest.raises(RunMismatch, match="no atomflux run recorded"):
        open_run(tmp_path / "b", "md", {})


def test_fingerprint_follows_weights_and_structures():
    assert fingerprint(LennardJones(3.4, 0.01, 8.5)) == fingerprint(LennardJones(3.4, 0.01, 8.5))
    assert fingerprint(LennardJones(3.4, 0.01, 8.5)) != fingerprint(LennardJones(3.4, 0.02, 8.5))
    model = torch.nn.Linear(2, 1)
    before = fingerprint(model)
    with torch.no_grad():
        model.weight[0, 0] += 1e-6
    assert fingerprint(model) != before
    cu = bulk("Cu", "fcc", a=3.6)
    moved = cu.copy()
    moved.positions[0, 0] += 1e-9
    assert fingerprint(cu) != fingerprint(moved)
    assert fingerprint({"x": [1, 2]}) == fingerprint({"x": [1, 2]})


def test_claim_result_keeps_results_of_other_inputs(tmp_path):
    assert claim_result(tmp_path, "transport", {"flux": "a.npz"}) == "transport"
    (tmp_path / "transport.json").write_text(json.dumps({"inputs": {"flux": "a.npz"}, "kappa": 1.0}))
    assert claim_result(tmp_path, "transport", {"flux": "a.npz"}) == "transport"
    assert claim_result(tmp_path, "transport", {"trajectory": "t.traj"}) == "transport-2"
    (tmp_path / "transport-2.json").write_text(json.dumps({"inputs": {"trajectory": "t.traj"}}))
    assert claim_result(tmp_path, "transport", {"flux": "b.npz"}) == "transport-3"
