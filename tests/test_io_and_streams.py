"""dialog_env.io (atomic writes) and dialog_env.random_streams (named seed streams)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from dialog_env.io import atomic_path, atomic_write_json, atomic_write_text
from dialog_env.random_streams import PURPOSES, stream, stream_seed


def test_atomic_json_writes_numpy_values_and_a_final_newline(tmp_path):
    path = atomic_write_json(tmp_path / "deep" / "report.json", {"a": np.int64(3), "b": np.arange(2.0)})
    assert path.read_text().endswith("}\n")
    assert json.loads(path.read_text()) == {"a": 3, "b": [0.0, 1.0]}


def test_a_failed_write_leaves_the_previous_file_and_no_temporary(tmp_path):
    path = atomic_write_text(tmp_path / "report.json", "previous\n")
    with pytest.raises(TypeError, match="cannot write object"):
        atomic_write_json(path, {"bad": object()})
    with pytest.raises(RuntimeError):
        with atomic_path(path) as temporary:
            temporary.write_text("half")
            raise RuntimeError("crash while writing")
    assert path.read_text() == "previous\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.json"]


def test_keep_suffix_names_the_temporary_file_with_the_destination_suffix(tmp_path):
    with atomic_path(tmp_path / "final.zip", keep_suffix=True) as temporary:
        assert temporary.suffix == ".zip" and temporary.name.startswith(".tmp-")
        temporary.write_bytes(b"zip")
    assert (tmp_path / "final.zip").read_bytes() == b"zip"


@pytest.mark.parametrize(
    ("purpose", "indices", "old_entropy"),
    [
        ("pretraining", (4,), [11, 1, 4]),
        ("policy_improvement", (9,), [11, 2, 9]),
        ("random_agent", (), [11, 7]),
        ("evaluation_episodes", (), [11, 20181203]),
        ("synthetic_attributes", (), [11, 1]),
        ("captioner_distant_references", (), [11, 11]),
        ("realism_dialogs", (5,), [11, 5]),
    ],
)
def test_streams_repeat_the_numbers_of_the_old_seed_constants(purpose, indices, old_entropy):
    expected = np.random.default_rng(old_entropy).integers(1 << 62, size=4)
    assert stream(11, purpose, *indices).integers(1 << 62, size=4).tolist() == expected.tolist()
    assert stream_seed(11, purpose, *indices).entropy == old_entropy


def test_streams_differ_by_purpose_index_and_seed():
    draws = {
        (seed, purpose, index): stream(seed, purpose, index).integers(1 << 62)
        for seed in (0, 1)
        for purpose in ("pretraining", "policy_improvement")
        for index in (0, 1)
    }
    assert len(set(draws.values())) == len(draws)


def test_an_unknown_purpose_lists_the_known_ones():
    with pytest.raises(KeyError, match="unknown random stream purpose 'pretrain'.*'pretraining'"):
        stream(0, "pretrain")
    assert all(isinstance(code, int) for prefix in PURPOSES.values() for code in prefix)
