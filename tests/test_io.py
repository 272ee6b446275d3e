"""Model files: round trip, metadata, and refusal of files that would run code."""

import json
import pickle

import pytest
import torch

from atomflux.evaluate import evaluate
from atomflux.io import load_model, read_metadata, save_model
from atomflux.models import LennardJones
from atomflux.systems import Batch


def test_round_trip_gives_identical_outputs(tmp_path, random_model, alloy):
    path = save_model(random_model, tmp_path / "m.pt", {"note": "test"})
    loaded = load_model(path)
    assert loaded.species == random_model.species and loaded.cutoff == random_model.cutoff
    batch = Batch.from_atoms(alloy, random_model.cutoff)
    a, b = evaluate(random_model, batch, stress=True), evaluate(loaded, batch, stress=True)
    assert torch.equal(a.energy, b.energy) and torch.equal(a.forces, b.forces) and torch.equal(a.stress, b.stress)
    meta = read_metadata(path)
    assert meta["architecture"] == "PowerSpectrumPotential" and meta["note"] == "test"
    assert meta["units"]["energy"] == "eV" and meta["atomflux_version"]


def test_analytic_model_round_trip(tmp_path):
    lj = LennardJones(2.0, 0.3, 5.0, cutoff_mode="smooth", r_on=4.0)
    loaded = load_model(save_model(lj, tmp_path / "lj.pt"))
    assert loaded.config() == lj.config()


class Exploit:
    def __reduce__(self):
        import os
        return (os.system, ("touch PWNED",))


def test_file_that_runs_code_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    evil = tmp_path / "evil.pt"
    torch.save({"format": "atomflux-model", "metadata": "{}", "state_dict": {}, "payload": Exploit()}, evil)
    with pytest.raises(ValueError, match="refused"):
        load_model(evil)
    assert not (tmp_path / "PWNED").exists()
    plain = tmp_path / "plain.pt"
    plain.write_bytes(pickle.dumps(Exploit()))
    with pytest.raises(ValueError):
        load_model(plain)
    assert not (tmp_path / "PWNED").exists()


def test_missing_and_foreign_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="shipped"):
        load_model(tmp_path / "nope.pt")
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(3)}, other)
    with pytest.raises(ValueError, match="not an atomflux model"):
        load_model(other)
    text = tmp_path / "text.pt"
    text.write_text("hello")
    with pytest.raises(ValueError, match="not a readable"):
        load_model(text)


def test_tampered_metadata(tmp_path, random_model):
    path = save_model(random_model, tmp_path / "m.pt")
    archive = torch.load(path, weights_only=True)
    meta = json.loads(archive["metadata"])
    meta["config"]["hidden"] = [3]
    archive["metadata"] = json.dumps(meta)
    torch.save(archive, path)
    with pytest.raises(ValueError, match="do not match"):
        load_model(path)


def test_shipped_demo_model_loads():
    model = load_model("demo")
    assert set(model.species) == {"Ni", "Cu", "Ag", "Au"}
    assert model.cutoff == pytest.approx(4.5)
    assert "demonstration" in model.metadata["description"]
