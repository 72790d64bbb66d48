"""No file the project reads can run code when loaded.

Each test plants a pickle payload that would create a marker file if it were ever unpickled, in
every kind of file the project reads (agent checkpoints ``last.pt`` / ``stage1.pt`` / ``final.pt``,
captioner checkpoints, Stable-Baselines3 ``.zip`` models, the Shoes embedding pickle and feature
``.npz``, caption JSON, HDF5 catalogues), loads it the way a user would, and checks that the
marker never appears and that a project error names the file.
"""

from __future__ import annotations

import base64
import builtins
import io
import json
import pickle
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

import dialog_env
from agents.checkpoints import load_checkpoint, load_dialog_manager, save_checkpoint
from dialog_env.catalog import Catalog
from dialog_env.data.captions import load_relative_captions, read_caption_texts
from dialog_env.errors import (
    CaptionFormatError,
    CatalogFormatError,
    ConfigurationError,
    DataFormatError,
    DialogEnvError,
    UserSimulatorError,
)
from dialog_env.synthetic import make_synthetic_shoes


class Plant:
    """Unpickled, it opens (creates) ``marker`` for writing: proof that the file ran code."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (builtins.open, (self.marker, "w"))


@pytest.fixture()
def marker(tmp_path: Path) -> Path:
    path = tmp_path / "MARKER-code-ran"
    yield path
    assert not path.exists(), "a file ran code when it was loaded"


def _catalog() -> Catalog:
    return make_synthetic_shoes(num_train=30, num_test=10, dim=8, seed=1)


def _refused(error: type[DialogEnvError], path: Path, load) -> str:  # noqa: ANN001
    with pytest.raises(error) as caught:
        load()
    assert str(path) in str(caught.value), caught.value
    return str(caught.value)


def _torch_plant(path: Path, marker: Path, **payload) -> Path:  # noqa: ANN003
    torch.save({**payload, "evil": Plant(marker)}, path)
    return path


# ---------------------------------------------------------------------------- agent checkpoints
@pytest.mark.parametrize("name", ["last.pt", "stage1.pt", "final.pt"])
def test_agent_checkpoints_with_a_payload_are_refused(tmp_path, marker, name):
    path = _torch_plant(tmp_path / name, marker, format="dialog-env-checkpoint", version=1, model={}, vocabulary=[])
    message = _refused(ConfigurationError, path, lambda: load_checkpoint(path))
    assert "could run code" in message and ".open" in message  # the refused global is named
    _refused(ConfigurationError, path, lambda: load_dialog_manager(path))


def test_resume_from_a_planted_last_checkpoint_runs_nothing(tmp_path, marker):
    import train_agent

    last = tmp_path / "planted" / "checkpoints" / "last.pt"
    last.parent.mkdir(parents=True)
    _torch_plant(last, marker, format="dialog-env-checkpoint", version=1)
    args = train_agent.Args(run_name="planted", runs_dir=str(tmp_path), resume=True, eval_episodes=5, progress=False)
    _refused(ConfigurationError, last, lambda: train_agent.run(args))


def test_a_real_checkpoint_round_trips_through_the_safe_loader(tmp_path):
    path = tmp_path / "last.pt"
    results = {"paper-stage1": {"episodes": np.int64(5), "turns": [{"success": {"mean": np.float64(0.25)}}]}}
    save_checkpoint(path, {"stage": "improve", "iteration": 3, "model": {"w": torch.ones(2)},
                           "optimizer": {"state": {}}, "base": None, "model_config": {"image_dim": 8},
                           "vocabulary": ["a"], "results": results})  # fmt: skip
    payload = load_checkpoint(path, image_dim=8, vocabulary_words=["a"])
    assert payload["results"] == {"paper-stage1": {"episodes": 5, "turns": [{"success": {"mean": 0.25}}]}}
    assert type(payload["results"]["paper-stage1"]["episodes"]) is int


# ---------------------------------------------------------------------------- captioner checkpoints
def test_captioner_checkpoint_with_a_payload_is_refused(tmp_path, marker):
    path = _torch_plant(tmp_path / "captioner.pt", marker, format="dialog-env-captioner", version=1, config={},
                        model={}, vocabulary=[], catalog={})  # fmt: skip
    _refused(UserSimulatorError, path, lambda: dialog_env.make_user("captioner", checkpoint=str(path)))
    _refused(
        UserSimulatorError,
        path,
        lambda: dialog_env.DialogRetrievalEnv(
            catalog=_catalog(), user="captioner", user_kwargs={"checkpoint": str(path)}
        ),
    )


def test_captioner_checkpoint_with_numpy_arrays_is_refused(tmp_path):
    """NumPy arrays need pickled globals: the safe loader rebuilds none (older checkpoints stored them)."""
    path = tmp_path / "old.pt"
    torch.save({"format": "dialog-env-captioner", "version": 1, "config": {}, "model": {}, "vocabulary": [],
                "catalog": {"features": np.zeros((2, 3), np.float32)}}, path)  # fmt: skip
    message = _refused(UserSimulatorError, path, lambda: dialog_env.make_user("captioner", checkpoint=str(path)))
    assert "numpy" in message.lower()


# ---------------------------------------------------------------------------- Stable-Baselines3 models
def _sb3_model(tmp_path: Path):  # noqa: ANN202
    pytest.importorskip("stable_baselines3")
    from agents.sb3 import make_model, make_training_env

    env = make_training_env(
        "ppo", {"catalog": {"num_train": 30, "num_test": 10, "dim": 8, "seed": 1}}, n_envs=1, max_turns=2
    )
    model = make_model("ppo", env, seed=0, device="cpu", n_steps=16, batch_size=16, n_epochs=1)
    path = tmp_path / "final.zip"
    model.save(path)
    return model, env, path


def _rewrite_zip(path: Path, edit) -> None:  # noqa: ANN001
    with zipfile.ZipFile(path) as archive:
        entries = {name: archive.read(name) for name in archive.namelist()}
    edit(entries)
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in entries.items():
            archive.writestr(name, data)


def test_sb3_zip_with_pickled_entries_loads_without_unpickling_them(tmp_path, marker):
    from agents.sb3 import load_model

    model, env, path = _sb3_model(tmp_path)
    blob = {":type:": "<class 'function'>", ":serialized:": base64.b64encode(pickle.dumps(Plant(marker))).decode()}

    def plant(entries: dict[str, bytes]) -> None:
        data = json.loads(entries["data"])
        for key in ("policy_class", "lr_schedule", "observation_space", "an_extra_entry"):
            data[key] = blob
        entries["data"] = json.dumps(data).encode()

    _rewrite_zip(path, plant)
    loaded = load_model("ppo", path, env, device="cpu")
    observations = env.reset()
    np.testing.assert_array_equal(
        loaded.predict(observations, deterministic=True)[0], model.predict(observations, deterministic=True)[0]
    )


def test_sb3_zip_with_a_payload_in_its_weights_is_refused(tmp_path, marker):
    from agents.sb3 import load_model

    _, env, path = _sb3_model(tmp_path)

    def plant(entries: dict[str, bytes]) -> None:
        buffer = io.BytesIO()
        torch.save({"evil": Plant(marker)}, buffer)
        entries["policy.pth"] = buffer.getvalue()

    _rewrite_zip(path, plant)
    _refused(ConfigurationError, path, lambda: load_model("ppo", path, env, device="cpu"))


def test_sb3_zip_that_is_not_a_model_is_refused(tmp_path, marker):
    pytest.importorskip("stable_baselines3")
    from agents.sb3 import load_model

    _, env, _ = _sb3_model(tmp_path)
    path = tmp_path / "notes.zip"
    path.write_bytes(pickle.dumps(Plant(marker)))
    _refused(ConfigurationError, path, lambda: load_model("ppo", path, env, device="cpu"))


# ---------------------------------------------------------------------------- the Shoes release files
def test_embedding_pickle_with_a_payload_is_refused(tmp_path, marker):
    from dialog_env.data.shoes import load_embedding

    path = tmp_path / "256embedding.p"
    path.write_bytes(pickle.dumps({"train": Plant(marker), "test": np.zeros((2, 3), np.float32)}))
    message = _refused(DataFormatError, path, lambda: load_embedding(path))
    assert "builtins" in message or "io" in message


def test_feature_npz_holding_an_object_array_is_refused(tmp_path, marker):
    from dialog_env.data.shoes import import_shoes

    names = [f"img_{i}.jpg" for i in range(6)]
    (tmp_path / "train.txt").write_text("\n".join(names[:4]) + "\n")
    (tmp_path / "test.txt").write_text("\n".join(names[4:]) + "\n")
    objects = np.empty((6, 2), dtype=object)
    objects[:] = Plant(marker)
    path = tmp_path / "fc_feature.npz"
    np.savez(path, objects)
    with pytest.raises(DataFormatError) as caught:
        import_shoes(train_names=tmp_path / "train.txt", test_names=tmp_path / "test.txt", fc=path,
                     output=tmp_path / "shoes.h5", progress=False)  # fmt: skip
    assert str(path) in str(caught.value)
    assert not (tmp_path / "shoes.h5").exists()


# ---------------------------------------------------------------------------- captions and catalogues
def test_caption_file_holding_a_pickle_is_refused(tmp_path, marker):
    path = tmp_path / "relative_captions.json"
    path.write_bytes(pickle.dumps([Plant(marker)]))
    _refused(CaptionFormatError, path, lambda: load_relative_captions(path, _catalog()))
    _refused(CaptionFormatError, path, lambda: read_caption_texts(path))


def test_caption_json_with_pickle_text_stays_text(tmp_path, marker):
    """JSON is data: a pickle's text in a caption field is only an odd caption, never unpickled."""
    ids = _catalog().ids
    blob = base64.b64encode(pickle.dumps(Plant(marker))).decode()
    path = tmp_path / "relative_captions.json"
    path.write_text(json.dumps([{"ImageName": ids[0], "ReferenceImageName": ids[1], "RelativeCaption": blob}]))
    captions = load_relative_captions(path, _catalog())
    assert captions.captions == [blob]


def test_hdf5_catalogue_with_pickled_bytes_is_refused(tmp_path, marker):
    path = _catalog().save(tmp_path / "planted.h5")
    payload = np.frombuffer(pickle.dumps(Plant(marker)), dtype=np.uint8)
    with h5py.File(path, "r+") as handle:
        del handle["features"]
        handle.create_dataset("features", data=np.tile(payload, (40, 1)))  # uint8 rows of pickle bytes
        handle.attrs["name"] = np.void(pickle.dumps(Plant(marker)))
    _refused(CatalogFormatError, path, lambda: Catalog.load(path))


def test_a_pickle_named_like_a_catalogue_is_refused(tmp_path, marker):
    path = tmp_path / "catalog.h5"
    path.write_bytes(pickle.dumps(Plant(marker)))
    _refused(CatalogFormatError, path, lambda: Catalog.load(path))
    _refused(CatalogFormatError, path, lambda: dialog_env.DialogRetrievalEnv(catalog=str(path)))
