"""Every bad input of ``docs/bad_input.md``: one project error naming the culprit, what was found, what was expected.

Each case below builds its bad input in a temporary folder and triggers it; the test checks the
exception type (always a :class:`~dialog_env.errors.DialogEnvError`) and that the message names
the file or argument, what was found and what was expected. The table in ``docs/bad_input.md`` is
generated from these cases (``python tests/test_bad_input.py > docs/bad_input.md``), and a test
checks that the committed table is up to date, so the documentation cannot drift from behaviour.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import gymnasium as gym
import h5py
import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import dialog_env  # noqa: E402
from agents.checkpoints import load_checkpoint, load_paper_run, save_checkpoint  # noqa: E402
from dialog_env.catalog import Catalog  # noqa: E402
from dialog_env.data.captions import load_image_captions, load_relative_captions  # noqa: E402
from dialog_env.errors import (  # noqa: E402
    CaptionFormatError,
    CaptionNotFoundError,
    CatalogError,
    CatalogFormatError,
    CatalogNotFoundError,
    ConfigurationError,
    DataFileNotFoundError,
    DataFormatError,
    DialogEnvError,
    InvalidActionError,
    ResetNeeded,
    UserSimulatorError,
)
from dialog_env.play.log import read_dialogs  # noqa: E402
from dialog_env.render import draw_catalog, draw_shoe  # noqa: E402
from dialog_env.synthetic import make_synthetic_shoes  # noqa: E402

DOC = ROOT / "docs" / "bad_input.md"


def catalogue() -> Catalog:
    return make_synthetic_shoes(num_train=20, num_test=6, dim=8, seed=1)


def env(**kwargs) -> dialog_env.DialogRetrievalEnv:  # noqa: ANN003
    return dialog_env.DialogRetrievalEnv(catalog=catalogue(), **kwargs)


def started_env(**kwargs) -> dialog_env.DialogRetrievalEnv:  # noqa: ANN003
    environment = env(**kwargs)
    environment.reset(seed=0)
    return environment


def ended_env() -> dialog_env.DialogRetrievalEnv:
    environment = started_env(max_turns=1)
    environment.step(0)
    return environment


def vector_env():  # noqa: ANN201
    envs = gym.make_vec("DialogRetrieval-v0", num_envs=3, vectorization_mode="vector_entry_point", catalog=catalogue())
    envs.reset(seed=0)
    return envs


def two_image_catalogue() -> Catalog:
    full = catalogue()
    rows = np.array([0, 1, 2])
    return Catalog(full.features[rows], full.ids[rows], {"train": [0, 1], "test": [2]},
                   {k: v[rows] for k, v in full.attributes.items()}, list(full.attribute_schema.values()),
                   name="three")  # fmt: skip


# ---------------------------------------------------------------------------- catalogue files
def good_file(folder: Path) -> Path:
    return catalogue().save(folder / "good.h5")


def edited_file(folder: Path, edit: Callable[[h5py.File], None]) -> Path:
    path = catalogue().save(folder / "bad.h5")
    with h5py.File(path, "r+") as handle:
        edit(handle)
    return path


def replace(name: str, data: np.ndarray) -> Callable[[h5py.File], None]:
    def edit(handle: h5py.File) -> None:
        del handle[name]
        handle.create_dataset(name, data=data)

    return edit


def with_nan(handle: h5py.File) -> None:
    features = handle["features"][()]
    features[3, 1] = np.nan
    replace("features", features)(handle)


def with_duplicate_id(handle: h5py.File) -> None:
    ids = [i.decode() for i in handle["ids"][()]]
    ids[5] = ids[2]
    replace("ids", np.array(ids, dtype=h5py.string_dtype("utf-8")))(handle)


def truncated_file(folder: Path) -> Path:
    good = good_file(folder)
    path = folder / "truncated.h5"
    path.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    return path


def text_file(folder: Path, name: str = "notes.h5") -> Path:
    path = folder / name
    path.write_text("this is not HDF5\n")
    return path


# ---------------------------------------------------------------------------- caption files
def caption_file(folder: Path, content: str | list) -> Path:
    path = folder / "captions.json"
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return path


def relative(folder: Path, records: str | list, **kwargs):  # noqa: ANN003, ANN201
    full = catalogue()
    return load_relative_captions(caption_file(folder, records), full, **kwargs)


def record(caption: str = "is darker", target: int = 0, reference: int = 1) -> dict:
    ids = catalogue().ids
    return {"ImageName": ids[target], "ReferenceImageName": ids[reference], "RelativeCaption": caption}


# ---------------------------------------------------------------------------- checkpoints
def agent_checkpoint(folder: Path) -> Path:
    path = folder / "last.pt"
    save_checkpoint(path, {"model_config": {"image_dim": 8, "vocab_size": 20}, "vocabulary": ["a", "b"], "model": {}})
    return path


def damaged(folder: Path, how: str) -> Path:
    good = agent_checkpoint(folder)
    path = folder / f"{how}.pt"
    data = good.read_bytes()
    path.write_bytes(
        data[: len(data) // 2]
        if how == "truncated"
        else bytes(np.random.default_rng(0).integers(0, 256, 2048, dtype=np.uint8))
    )
    return path


def captioner_checkpoint(folder: Path, dim: int = 8) -> Path:
    from dialog_env.users.captioner import CaptionerConfig, RelativeCaptioner, save_captioner
    from dialog_env.users.rule import RuleBasedUser

    vocabulary = RuleBasedUser().vocabulary
    model = RelativeCaptioner(
        CaptionerConfig(image_dim=dim, vocab_size=len(vocabulary), embed_dim=8, hidden_dim=8, attention_dim=4)
    )
    source = make_synthetic_shoes(num_train=20, num_test=6, dim=dim, seed=1)
    return save_captioner(folder / "captioner.pt", model, vocabulary, source)


def planted_checkpoint(folder: Path) -> Path:
    """A torch file whose pickle would create a file when unpickled."""

    class Plant:
        def __reduce__(self):
            return (open, (str(folder / "MARKER"), "w"))

    path = folder / "planted.pt"
    torch.save({"format": "dialog-env-checkpoint", "version": 1, "evil": Plant()}, path)
    return path


def checkpoint_without(folder: Path, key: str) -> Path:
    path = agent_checkpoint(folder)
    payload = torch.load(path, weights_only=True)
    del payload[key]
    torch.save(payload, path)
    return path


def run_with_checkpoint(folder: Path, **changes) -> Path:  # noqa: ANN003
    """``runs/bad/checkpoints/last.pt``: a training checkpoint with ``changes``, for ``--resume``."""
    import train_agent

    last = folder / "bad" / "checkpoints" / "last.pt"
    payload = {"stage": "pretrain", "iteration": 2, "model": {}, "optimizer": {}, "base": None, "results": {},
               "model_config": {"image_dim": 8, "vocab_size": 20}, "vocabulary": ["a", "b"],
               "args": __import__("dataclasses").asdict(train_agent.Args()), **changes}  # fmt: skip
    save_checkpoint(last, payload)
    return last


def resume(folder: Path, **arguments) -> int:  # noqa: ANN003
    import train_agent

    return train_agent.run(
        train_agent.Args(
            run_name="bad", runs_dir=str(folder), resume=True, eval_episodes=5, progress=False, **arguments
        )
    )


def train_args(**arguments) -> None:  # noqa: ANN003
    import train_agent

    train_agent.validate_args(train_agent.Args(**arguments))


def a_file(folder: Path) -> Path:
    path = folder / "notes.txt"
    path.write_text("a file, not a folder\n")
    return path


def locked_run(folder: Path) -> int:
    """``train_agent.py`` into a folder another process holds (simulated by holding its lock here)."""
    from dialog_env.runs import RunFolder

    with RunFolder(folder / "busy", "train_agent.py"):
        import train_agent

        return train_agent.run(train_agent.Args(run_name="busy", runs_dir=str(folder), eval_episodes=5, progress=False))


def bare_catalogue() -> Catalog:
    full = catalogue()
    return Catalog(full.features, full.ids, full.splits, name="no-attributes")


# ---------------------------------------------------------------------------- the cases
@dataclass(frozen=True)
class Case:
    """One bad input: where it belongs, what it is, how to trigger it, and what the user gets.

    ``patterns`` are regular expressions the message must match: the culprit (file or argument),
    what was found and what was expected.
    """

    id: str
    group: str
    description: str
    trigger: Callable[[Path], object]
    error: type[DialogEnvError]
    patterns: tuple[str, ...]


CASES: list[Case] = [
    # environment
    Case("action-out-of-range", "Environment", "action >= number of images", lambda d: started_env().step(20),
         InvalidActionError, ("action 20", "out of range", "0..19")),
    Case("action-negative", "Environment", "negative action", lambda d: started_env().step(-1),
         InvalidActionError, ("action -1", "out of range", "0..19")),
    Case("action-float", "Environment", "float action", lambda d: started_env().step(1.5),
         InvalidActionError, ("1.5", "float", "integer image index in 0..19")),
    Case("action-wrong-shape", "Environment", "array action in a single env",
         lambda d: started_env().step(np.array([1, 2])),
         InvalidActionError, ("shape \\(2,\\)", "one image index")),
    Case("vector-action-wrong-shape", "Environment", "vector env: actions of the wrong shape",
         lambda d: vector_env().step(np.array([0, 1])),
         InvalidActionError, ("\\(3,\\) array", "got shape \\(2,\\)")),
    Case("vector-action-out-of-range", "Environment", "vector env: one action out of range",
         lambda d: vector_env().step(np.array([0, 1, 99])),
         InvalidActionError, ("action 99 of dialog 2", "0..19")),
    Case("step-after-end", "Environment", "`step` after the episode ended, without `reset`",
         lambda d: ended_env().step(1),
         ResetNeeded, ("step\\(\\)", "episode ended", "call reset\\(\\) first")),
    Case("unknown-reward-mode", "Environment", "unknown reward mode", lambda d: env(reward_mode="rank"),
         ConfigurationError, ("reward_mode 'rank'", "percentile", "improvement", "success")),
    Case("unknown-split", "Environment", "unknown split", lambda d: env(split="val"),
         ConfigurationError, ("split 'val'", "available", "'test', 'train'")),
    Case("unknown-user", "Environment", "unknown user simulator name", lambda d: env(user="bob"),
         ConfigurationError, ("user simulator 'bob'", "registered", "'rule'")),
    Case("max-turns", "Environment", "`max_turns` < 1", lambda d: env(max_turns=0),
         ConfigurationError, ("max_turns", "integer >= 1", "got 0")),
    Case("split-too-small", "Environment", "a split with fewer than 2 images",
         lambda d: dialog_env.DialogRetrievalEnv(catalog=two_image_catalogue(), split="test"),
         CatalogError, ("split 'test'", "has 1 image", "at least 2")),
    Case("catalog-argument", "Environment", "`catalog=` of an unsupported type",
         lambda d: dialog_env.DialogRetrievalEnv(catalog=5),
         ConfigurationError, ("catalog must be", "got int")),
    Case("relative-attribute-without-attributes", "Environment",
         "`user=\"relative-attribute\"` on a catalogue without attributes",
         lambda d: dialog_env.DialogRetrievalEnv(catalog=bare_catalogue(), user="relative-attribute"),
         UserSimulatorError, ("user simulator 'relative-attribute'", "no-attributes", "lacks")),
    Case("expose-target-not-bool", "Environment", "`expose_target` that is not a bool (`\"yes\"`, `1`)",
         lambda d: env(expose_target="yes"),
         ConfigurationError, ("expose_target", "must be a bool", "got 'yes' of type str")),
    Case("user-kwargs-not-mapping", "Environment", "`user_kwargs` that is not a mapping (a list, a string)",
         lambda d: env(user_kwargs=["vague_rate", 0.2]),
         ConfigurationError, ("user_kwargs", "mapping of keyword arguments of user simulator 'rule'",
                              "got \\['vague_rate', 0.2\\] of type list")),
    Case("feedback-text-in-info-not-bool", "Environment", "`feedback_text_in_info` that is not a bool",
         lambda d: env(feedback_text_in_info="no"),
         ConfigurationError, ("feedback_text_in_info", "must be a bool", "got 'no' of type str")),
    Case("unknown-autoreset-mode", "Environment", "vector env: unknown `autoreset_mode`",
         lambda d: dialog_env.DialogRetrievalVectorEnv(num_envs=2, catalog=catalogue(), autoreset_mode="same_step"),
         ConfigurationError, ("autoreset_mode 'same_step'", "AutoresetMode", "'NextStep', 'SameStep', 'Disabled'")),
    Case("step-ended-dialog-disabled", "Environment",
         "vector env with `autoreset_mode=\"Disabled\"`: `step` before resetting an ended dialog",
         lambda d: (lambda e, zeros: (e.reset(seed=0), e.step(zeros), e.step(zeros)))(
             dialog_env.DialogRetrievalVectorEnv(num_envs=3, catalog=catalogue(), max_turns=1,
                                                 autoreset_mode="Disabled"), np.zeros(3, dtype=np.int64)),
         ResetNeeded, ("dialog\\(s\\) \\[0, 1, 2\\] have ended", "'Disabled'",
                       "reset\\(options=\\{'reset_mask': mask\\}\\)")),
    Case("catalog-seed-negative", "Environment", "negative seed of the synthetic catalogue",
         lambda d: dialog_env.DialogRetrievalEnv(catalog={"seed": -1}),
         ConfigurationError, ("seed of the synthetic catalogue", "non-negative integer", "got -1")),
    Case("query-beyond-float32", "Environment", "`QueryAction` query beyond the float32 range",
         lambda d: dialog_env.QueryAction(started_env()).step(np.full(8, 1e39)),
         InvalidActionError, ("query action", "\\|value\\| <= 3.4028235e\\+38", "got 1e\\+39 at index 0")),
    Case("query-nan", "Environment", "`QueryAction` query with NaN",
         lambda d: dialog_env.QueryAction(started_env()).step(np.full(8, np.nan)),
         InvalidActionError, ("query action", "finite float32 values", "got nan at index 0")),
    # catalogue files
    Case("catalog-missing-file", "Catalogue files", "missing file", lambda d: Catalog.load(d / "absent.h5"),
         CatalogNotFoundError, ("absent.h5", "does not exist")),
    Case("catalog-not-hdf5", "Catalogue files", "not an HDF5 file", lambda d: Catalog.load(text_file(d)),
         CatalogFormatError, ("notes.h5", "not a readable HDF5 file")),
    Case("catalog-truncated", "Catalogue files", "truncated file", lambda d: Catalog.load(truncated_file(d)),
         CatalogFormatError, ("truncated.h5", "truncated")),
    Case("catalog-missing-dataset", "Catalogue files", "missing dataset",
         lambda d: Catalog.load(edited_file(d, lambda h: h.__delitem__("ids"))),
         CatalogFormatError, ("bad.h5", "'ids'", "is missing")),
    Case("catalog-extra-dataset", "Catalogue files", "unexpected dataset",
         lambda d: Catalog.load(edited_file(d, lambda h: h.create_dataset("labels", data=np.zeros(3)))),
         CatalogFormatError, ("bad.h5", "unexpected dataset", "'labels'", "has only")),
    Case("catalog-wrong-dtype", "Catalogue files", "features not float32",
         lambda d: Catalog.load(edited_file(d, replace("features", np.zeros((26, 8), dtype=np.float64)))),
         CatalogFormatError, ("bad.h5", "'features'", "must be float32", "got float64")),
    Case("catalog-wrong-rank", "Catalogue files", "features not 2-D",
         lambda d: Catalog.load(edited_file(d, replace("features", np.zeros(26, dtype=np.float32)))),
         CatalogFormatError, ("bad.h5", "'features'", "shape \\(N, D\\)", "got shape \\(26,\\)")),
    Case("catalog-nan", "Catalogue files", "NaN/inf features", lambda d: Catalog.load(edited_file(d, with_nan)),
         CatalogFormatError, ("bad.h5", "'features'", "NaN or inf", "row 3")),
    Case("catalog-extreme-row", "Catalogue files", "a feature beyond the safe range |value| <= 1e15 (one row at 3e38)",
         lambda d: Catalog.load(edited_file(d, replace("features", np.vstack(
             [catalogue().features[:3], np.full((1, 8), 3e38, np.float32), catalogue().features[4:]])))),
         CatalogFormatError, ("bad.h5", "'features'", "row 3 \\(id 'syn_", "holds 3e\\+38", "\\|value\\| <= 1e\\+15")),
    Case("catalog-extreme-scale", "Catalogue files", "features scaled far beyond the safe range (all times 1e19)",
         lambda d: Catalog.load(edited_file(d, replace("features", catalogue().features * np.float32(1e19)))),
         CatalogFormatError, ("bad.h5", "'features'", "row 0 \\(id 'syn_", "\\|value\\| <= 1e\\+15",
                              "26 row\\(s\\) exceed it")),
    Case("catalog-duplicate-ids", "Catalogue files", "duplicate ids",
         lambda d: Catalog.load(edited_file(d, with_duplicate_id)),
         CatalogFormatError, ("bad.h5", "ids must be unique", "duplicated")),
    Case("catalog-split-out-of-range", "Catalogue files", "split index out of range",
         lambda d: Catalog.load(edited_file(d, replace("splits/test", np.array([20, 99])))),
         CatalogFormatError, ("bad.h5", "split 'test'", "out of range 0..25", "99")),
    Case("catalog-split-overlap", "Catalogue files", "overlapping splits",
         lambda d: Catalog.load(edited_file(d, replace("splits/test", np.array([0, 21])))),
         CatalogFormatError, ("bad.h5", "overlap", "disjoint")),
    Case("catalog-attribute-length", "Catalogue files", "attribute of the wrong length",
         lambda d: Catalog.load(edited_file(d, lambda h: h["attributes"].__delitem__("color")
                                            or h["attributes"].create_dataset("color", data=np.zeros(5, dtype=np.int16))
                                            .attrs.__setitem__("values", ["a"]))),
         CatalogFormatError, ("bad.h5", "attributes/color", "5 entries", "expected 26")),
    Case("catalog-schema-version", "Catalogue files", "unknown schema version",
         lambda d: Catalog.load(edited_file(d, lambda h: h.attrs.__setitem__("schema_version", 7))),
         CatalogFormatError, ("bad.h5", "schema_version 7", "reads schema version 1")),
    # caption files
    Case("captions-missing-file", "Caption files", "missing file",
         lambda d: load_image_captions(d / "absent.json", catalogue()),
         CaptionNotFoundError, ("absent.json", "does not exist")),
    Case("captions-malformed-json", "Caption files", "malformed JSON", lambda d: relative(d, '[{"ImageName": '),
         CaptionFormatError, ("captions.json", "not valid JSON", "line 1, column")),
    Case("captions-missing-key", "Caption files", "record without a required key",
         lambda d: relative(d, [record(), {"ImageName": "x.jpg", "RelativeCaption": "is red"}]),
         CaptionFormatError, ("captions.json", "record \\[1\\]", "no key 'ReferenceImageName'", "expected keys")),
    Case("captions-empty", "Caption files", "empty caption", lambda d: relative(d, [record("   ")]),
         CaptionFormatError, ("captions.json", "record \\[0\\]", "empty caption", "expected text")),
    Case("captions-unknown-image", "Caption files",
         "image not in the catalogue (`on_missing=\"error\"`; the default skips, counts and warns)",
         lambda d: relative(d, [record(), {**record(), "ImageName": "ghost.jpg"}], on_missing="error"),
         CaptionFormatError, ("captions.json", "record \\[1\\]", "'ghost.jpg' is not in catalogue",
                              "expected one of its ids")),
    Case("captions-non-ascii", "Caption files", "non-ASCII text (`non_ascii=\"transliterate\"` maps accents to ASCII)",
         lambda d: relative(d, [record("is more beige \u201cnude\u201d")]),
         CaptionFormatError, ("captions.json", "record \\[0\\]", "non-ASCII character", "U\\+201C",
                              "expected ASCII text")),
    # checkpoints
    Case("checkpoint-truncated", "Checkpoints", "truncated agent checkpoint",
         lambda d: load_checkpoint(damaged(d, "truncated")),
         ConfigurationError, ("truncated.pt", "could not be read", "truncated or corrupted")),
    Case("checkpoint-corrupted", "Checkpoints", "corrupted agent checkpoint (random bytes)",
         lambda d: load_checkpoint(damaged(d, "corrupted")),
         ConfigurationError, ("corrupted.pt", "could not be read")),
    Case("checkpoint-other-dimension", "Checkpoints", "agent checkpoint made for another feature dimension",
         lambda d: load_checkpoint(agent_checkpoint(d), image_dim=256),
         ConfigurationError, ("last.pt", "8-d catalogue features", "256-d")),
    Case("checkpoint-other-vocabulary", "Checkpoints", "agent checkpoint made for another vocabulary",
         lambda d: load_checkpoint(agent_checkpoint(d), vocabulary_words=["a", "b", "c"]),
         ConfigurationError, ("last.pt", "another vocabulary", "2 words", "has 3")),
    Case("checkpoint-payload", "Checkpoints",
         "a checkpoint holding a pickled object (code that would run when unpickled)",
         lambda d: load_checkpoint(planted_checkpoint(d)),
         ConfigurationError, ("planted.pt", "other than tensors and plain containers", "could run code")),
    Case("checkpoint-missing-key", "Checkpoints", "agent checkpoint missing a key",
         lambda d: load_checkpoint(checkpoint_without(d, "model")),
         ConfigurationError, ("last.pt", "lacks the key 'model'", "it holds")),
    Case("checkpoint-unknown-stage", "Checkpoints", "`--resume` from a checkpoint with an unknown stage",
         lambda d: resume(d) if run_with_checkpoint(d, stage="warmup") else None,
         ConfigurationError, ("last.pt", "stage 'warmup'", "'pretrain', 'improve', 'done'")),
    Case("checkpoint-resume-missing-key", "Checkpoints", "`--resume` from a checkpoint without its optimizer state",
         lambda d: resume(d) if run_with_checkpoint(d, optimizer=None) else None,
         ConfigurationError, ("last.pt", "'optimizer' is a NoneType")),
    Case("resume-changed-args", "Checkpoints", "`--resume` with other training arguments",
         lambda d: resume(d, seed=5, tau=0.5) if run_with_checkpoint(d) else None,
         ConfigurationError, ("--seed: 1 -> 5", "--tau: 0.2 -> 0.5", "--allow-changed-args")),
    Case("resume-without-checkpoint", "Checkpoints", "`train_agent.py --resume` without a checkpoint",
         lambda d: __import__("train_agent").run(__import__("train_agent").Args(run_name="none", runs_dir=str(d),
                                                                                resume=True, eval_episodes=5)),
         ConfigurationError, ("--resume", "no checkpoint", "last.pt")),
    Case("captioner-truncated", "Checkpoints", "truncated captioner checkpoint",
         lambda d: dialog_env.make_user("captioner", checkpoint=str(damaged_captioner(d))),
         UserSimulatorError, ("captioner-truncated.pt", "could not be read", "truncated or corrupted")),
    Case("captioner-other-dimension", "Checkpoints", "captioner trained on another feature dimension",
         lambda d: env(user="captioner", user_kwargs={"checkpoint": str(captioner_checkpoint(d, dim=16))}),
         UserSimulatorError, ("captioner.pt", "16-d features", "has 8-d features")),
    Case("captioner-other-catalogue", "Checkpoints", "captioner trained on another catalogue (no image in common)",
         lambda d: dialog_env.DialogRetrievalEnv(catalog=make_synthetic_shoes(num_train=20, num_test=6, dim=8, seed=2),
                                                 user="captioner",
                                                 user_kwargs={"checkpoint": str(captioner_checkpoint(d))}),
         UserSimulatorError, ("captioner.pt", "shares none", "strict_catalog=False")),
    Case("captioner-other-features", "Checkpoints", "captioner trained on other features of the same images",
         lambda d: dialog_env.DialogRetrievalEnv(catalog=shifted_catalogue(), user="captioner",
                                                 user_kwargs={"checkpoint": str(captioner_checkpoint(d))}),
         UserSimulatorError, ("captioner.pt", "other features", "retrain the captioner")),
    Case("captioner-payload", "Checkpoints", "a captioner checkpoint holding a pickled object",
         lambda d: dialog_env.make_user("captioner", checkpoint=str(planted_checkpoint(d))),
         UserSimulatorError, ("planted.pt", "could run code")),
    # commands
    Case("seed-negative", "Commands", "`train_agent.py --seed -1`", lambda d: train_args(seed=-1),
         ConfigurationError, ("--seed", "0..4294967295", "got -1")),
    Case("seed-too-large", "Commands", "`train_agent.py --seed 4294967296` (2^32)",
         lambda d: train_args(eval_seed=2**32),
         ConfigurationError, ("--eval-seed", "0..4294967295", "got 4294967296")),
    Case("hyperparameter-nan", "Commands", "`--margin nan`, `--tau inf`, `--pretrain-lr nan`",
         lambda d: train_args(margin=float("nan"), tau=float("inf"), pretrain_lr=float("nan")),
         ConfigurationError, ("--margin must be a finite number >= 0, got nan",
                              "--tau must be a finite number > 0, got inf",
                              "--pretrain-lr .* got nan")),
    Case("device-without-cuda", "Commands", "`--device cuda` on a CPU-only torch", lambda d: train_args(device="cuda"),
         ConfigurationError, ("device 'cuda'", "no CUDA device", "'cpu' or 'auto'")),
    Case("runs-dir-file", "Commands", "a file given as `--runs-dir`", lambda d: train_args(runs_dir=str(a_file(d))),
         ConfigurationError, ("--runs-dir", "notes.txt", "is a file, expected a folder")),
    Case("output-file", "Commands", "a file given as `train_captioner.py --output`",
         lambda d: __import__("train_captioner").run(__import__("train_captioner").Args(output=str(a_file(d)))),
         ConfigurationError, ("--output", "notes.txt", "is a file, expected a folder")),
    Case("run-name-path", "Commands", "`--run-name` that is a path", lambda d: train_args(run_name="../elsewhere"),
         ConfigurationError, ("--run-name must be one folder name", "'../elsewhere'")),
    Case("knn-unknown", "Commands", "`train_agent.py --knn annoy`", lambda d: train_args(knn="annoy"),
         ConfigurationError, ("unknown k-NN backend 'annoy'", "faiss-ivf")),
    Case("knn-option-unknown", "Commands", "`--knn faiss-ivf --knn-options '{\"nprob\": 8}'` (a typo)",
         lambda d: train_args(knn="faiss-ivf", knn_options='{"nprob": 8}'),
         ConfigurationError, ("'faiss-ivf' has no settings \\['nprob'\\]", "nprobe")),
    Case("knn-not-paper", "Commands", "`--agent ppo --knn faiss-ivf`",
         lambda d: train_args(agent="ppo", knn="faiss-ivf"),
         ConfigurationError, ("--knn and --knn-options apply to the paper's agent, not 'ppo'",)),
    Case("run-folder-in-use", "Commands", "a run folder another process is writing", locked_run,
         ConfigurationError, ("busy", "is in use by process \\d+", "choose another run name")),
    # pictures, image folders and the play page's log
    Case("draw-code-out-of-range", "Pictures and play", "`draw_shoe` with a code outside the schema",
         lambda d: draw_shoe([0] * 13 + [99]), ConfigurationError, ("'ornament'", "code 99", "0..5")),
    Case("draw-size", "Pictures and play", "`draw_shoe` at an unsupported size",
         lambda d: draw_shoe([0] * 14, 100), ConfigurationError, ("canvas size", "128, 256, 512", "100")),
    Case("draw-unsafe-id", "Pictures and play", "drawing a catalogue whose id is not a file name",
         lambda d: draw_catalog(unsafe_id_catalogue(), d / "out", progress=False), ConfigurationError,
         ("'../up'", "not a safe file name")),
    Case("images-empty-folder", "Pictures and play", "`python -m dialog_env.data.images build` of an empty folder",
         lambda d: build_images(empty_folder(d)), DataFileNotFoundError, ("images'", "holds no image files", "\\.png")),
    Case("images-corrupt-file", "Pictures and play", "an image file that does not decode",
         lambda d: build_images(corrupt_image_folder(d)), DataFormatError, ("broken.png", "--skip-bad")),
    Case("play-log-not-json", "Pictures and play", "a dialog log line that is not JSON",
         lambda d: read_dialogs(log_file(d, "{not json\n")), DataFormatError, ("log.jsonl:1", "not JSON")),
    Case("play-log-orphan-turn", "Pictures and play", "a dialog log turn of a dialog that never started",
         lambda d: read_dialogs(log_file(d, json.dumps({"version": 1, "event": "turn", "dialog": "x"}) + "\n")),
         DataFormatError, ("log.jsonl:1", "'x'", "never started")),
    Case("play-run-missing", "Pictures and play", "`python -m dialog_env.play --agent` without a checkpoint there",
         lambda d: load_paper_run(d / "no-run"), DataFileNotFoundError, ("no-run", "no checkpoint", "train_agent.py")),
]  # fmt: skip


def unsafe_id_catalogue() -> Catalog:
    full = catalogue()
    return Catalog(full.features, ["../up", *full.ids[1:]], full.splits, full.attributes,
                   list(full.attribute_schema.values()))  # fmt: skip


def log_file(folder: Path, text: str) -> Path:
    path = folder / "log.jsonl"
    path.write_text(text)
    return path


def empty_folder(folder: Path) -> Path:
    path = folder / "images"
    path.mkdir()
    return path


def corrupt_image_folder(folder: Path) -> Path:
    path = empty_folder(folder)
    (path / "broken.png").write_bytes(b"\x89PNG not really")
    return path


def build_images(folder: Path) -> Path:
    from dialog_env.data.images import build_image_catalog

    return build_image_catalog(folder, folder.parent / "out.h5", random_weights=True, image_size=32, progress=False)


def shifted_catalogue() -> Catalog:
    """The test catalogue's images with other features (as from another feature extractor)."""
    full = catalogue()
    return Catalog(
        full.features + 1, full.ids, full.splits, full.attributes, list(full.attribute_schema.values()), name="shifted"
    )


def damaged_captioner(folder: Path) -> Path:
    good = captioner_checkpoint(folder)
    path = folder / "captioner-truncated.pt"
    path.write_bytes(good.read_bytes()[:300])
    return path


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_bad_input_gives_one_clear_project_error(case, tmp_path):
    with pytest.raises(DialogEnvError) as caught:
        case.trigger(tmp_path)
    assert type(caught.value) is case.error, f"{case.id}: got {type(caught.value).__name__}: {caught.value}"
    message = str(caught.value)
    for pattern in case.patterns:
        assert re.search(pattern, message), f"{case.id}: {pattern!r} not in {message!r}"


def test_unknown_images_are_skipped_and_counted_by_default(tmp_path):
    with pytest.warns(UserWarning, match="skipped 1 of 2"):
        captions = relative(tmp_path, [record(), {**record(), "ImageName": "ghost.jpg"}])
    assert captions.missing_images == 1 and len(captions) == 1


# ---------------------------------------------------------------------------- the table
def render_table(folder: Path) -> str:
    """``docs/bad_input.md``: each case, what the user gets and the message, from running the cases."""
    lines = [
        "# Bad input: what you get",
        "",
        "Every case raises one error of a project exception type (all derive from",
        "`dialog_env.errors.DialogEnvError` and from the matching builtin, e.g. `ValueError`), whose message",
        "names the file or argument, what was found and what was expected. No case ends in a bare traceback",
        "from inside numpy, h5py or torch. This page is generated from `tests/test_bad_input.py`, which",
        "triggers every case (`python tests/test_bad_input.py > docs/bad_input.md`); a test keeps its rows current.",
        "Paths are shown relative to the folder of the bad files (`DIR`).",
    ]
    group = None
    for case in CASES:
        if case.group != group:
            group = case.group
            lines += ["", f"## {group}", "", "| case | error | message |", "| --- | --- | --- |"]
        case_folder = folder / case.id
        case_folder.mkdir(parents=True, exist_ok=True)
        try:
            case.trigger(case_folder)
        except DialogEnvError as error:
            message = str(error).replace(str(case_folder), "DIR").replace("|", "\\|").replace("\n", " ")
            message = re.sub(r"\s+", " ", message)
            if len(message) > 300:
                message = message[:297] + "..."
            lines.append(f"| {case.description} | `{type(error).__name__}` | {message} |")
        else:
            raise AssertionError(f"case {case.id} raised nothing")
    return "\n".join(lines) + "\n"


def _rows(markdown: str) -> list[tuple[str, str]]:
    """(case, error) of every table row; the messages' tails come from h5py or torch and vary with their versions."""
    return [tuple(cell.strip() for cell in line.split(" | ")[:2]) for line in markdown.splitlines()
            if line.startswith("| ") and not line.startswith(("| case", "| ---"))]  # fmt: skip


def test_documented_table_is_current(tmp_path):
    assert DOC.exists(), "run: python tests/test_bad_input.py > docs/bad_input.md"
    documented, current = DOC.read_text(), render_table(tmp_path)
    assert _rows(documented) == _rows(current), (
        "docs/bad_input.md is stale: python tests/test_bad_input.py > docs/bad_input.md"
    )
    assert len(_rows(documented)) == len(CASES)


if __name__ == "__main__":
    import contextlib
    import io
    import tempfile
    import warnings

    warnings.simplefilter("ignore")
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as scratch:
        with contextlib.redirect_stdout(io.StringIO()):  # the cases' own progress output
            table = render_table(Path(scratch))
        sys.stdout.write(table)
