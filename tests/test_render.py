"""``render_mode="rgb_array"``: frames of a fixed shape, their transcript read back glyph by glyph."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env as gym_check_env
from gymnasium.wrappers import RenderCollection

import dialog_env  # registers DialogRetrieval-v0
from dialog_env.render import PANEL_HEIGHT
from dialog_env.render import text as env_module  # the font and the transcript frame
from dialog_env.render.text import FRAME_COLUMNS, transcript_frame

SMALL = {"num_train": 60, "num_test": 20, "dim": 8, "seed": 1}
CHARACTERS = np.array([chr(code) for code in range(32, 127)])


def read_frame(frame: np.ndarray) -> list[str]:
    """The text of a transcript frame, recovered from its pixels with the env's font (an exact OCR).

    An environment's frame is read below its picture panel: ``read_frame(frame[PANEL_HEIGHT:])``.
    """
    scale, margin = env_module._FRAME_SCALE, env_module._FRAME_MARGIN
    cell_width, cell_height = env_module._CELL_WIDTH, env_module._CELL_HEIGHT
    # Each font pixel is a uniform scale x scale block.
    np.testing.assert_array_equal(frame, frame[::scale, ::scale].repeat(scale, axis=0).repeat(scale, axis=1))
    ink = (frame[::scale, ::scale] != np.array(env_module._BACKGROUND, dtype=np.uint8)).any(axis=-1)
    ink = ink[margin:, margin:]
    rows = ink.shape[0] // cell_height
    cells = ink[: rows * cell_height, : FRAME_COLUMNS * cell_width]
    cells = cells.reshape(rows, cell_height, FRAME_COLUMNS, cell_width)
    assert not cells[:, 7:].any() and not cells[:, :, :, 5:].any()  # nothing between the glyphs
    glyphs = cells[:, :7, :, :5].transpose(0, 2, 1, 3).reshape(rows, FRAME_COLUMNS, 1, 35)
    matches = (glyphs == env_module._GLYPHS.reshape(1, 1, -1, 35)).all(axis=-1)
    assert (matches.sum(axis=-1) == 1).all(), "a cell is not exactly one glyph"
    return ["".join(row).rstrip() for row in CHARACTERS[matches.argmax(axis=-1)]]


def make(**kwargs):
    return gym.make("DialogRetrieval-v0", catalog=SMALL, render_mode="rgb_array", **kwargs)


def text_height(max_turns: int) -> int:
    return -(-(16 + 18 * (max_turns + 3)) // 16) * 16


def expected_height(max_turns: int) -> int:
    """An environment's frame: the picture panel above the transcript."""
    return PANEL_HEIGHT + text_height(max_turns)


def test_the_font_has_one_distinct_inked_glyph_per_printable_character():
    glyphs = env_module._GLYPHS
    assert glyphs.shape == (95, 7, 5) and glyphs.dtype == np.bool_
    assert not glyphs[0].any() and glyphs[1:].reshape(94, -1).any(axis=1).all()  # only the space is blank
    assert len({glyph.tobytes() for glyph in glyphs}) == 95


@pytest.mark.parametrize("max_turns", [1, 4, 10])
def test_frames_have_one_shape_and_dtype_over_episodes(max_turns):
    env = make(max_turns=max_turns, expose_target=True)
    shape = (expected_height(max_turns), 1456, 3)
    frames = [env.unwrapped.render()]  # before the first reset (gym.make's wrapper refuses): the header only
    _, info = env.reset(seed=0)
    frames.append(env.render())
    for episode in range(2):
        ended = False
        while not ended:
            _, _, terminated, truncated, info = env.step(info["target_index"] if episode else 0)
            ended = terminated or truncated
            frames.append(env.render())
        _, info = env.reset()
        frames.append(env.render())
    assert all(frame.shape == shape and frame.dtype == np.uint8 for frame in frames)
    assert shape[0] % 16 == 0 and shape[1] % 16 == 0  # what video encoders want
    assert np.stack(frames).shape == (len(frames), *shape)


def test_the_frame_shows_the_transcript_and_changes_after_a_step():
    env = make(max_turns=4, expose_target=True)
    text = gym.make("DialogRetrieval-v0", catalog=SMALL, render_mode="ansi", max_turns=4, expose_target=True)
    _, info = env.reset(seed=5)
    text.reset(seed=5)
    before = env.render()
    lines = read_frame(before[PANEL_HEIGHT:])
    assert lines[0] == "DialogRetrieval-v0 | split 'train': 60 images | turn 0/4"
    assert lines[1] == "-" * FRAME_COLUMNS
    assert lines[2:3] == [line[:FRAME_COLUMNS] for line in text.render().splitlines()]
    ink_before = int((before != before[0, 0]).any(axis=-1).sum())
    assert ink_before > 2_000  # the header and the first line are drawn, not a blank frame

    for action in (3, info["target_index"]):
        env.step(action)
        text.step(action)
    after = env.render()
    assert after.shape == before.shape and not np.array_equal(after, before)
    lines = read_frame(after[PANEL_HEIGHT:])
    assert lines[0].endswith("turn 2/4")
    transcript = text.render().splitlines()
    assert len(transcript) == 3 and transcript[-1].endswith("<- target found")
    cut = [line if len(line) <= FRAME_COLUMNS else line[: FRAME_COLUMNS - 3] + "..." for line in transcript]
    assert lines[2:5] == cut
    assert lines[5:] == [""] * (len(lines) - 5)
    assert int((after != after[0, 0]).any(axis=-1).sum()) > ink_before
    # The line that found the target is green.
    found_row = after[PANEL_HEIGHT + (4 + 4 * 9) * 2 : PANEL_HEIGHT + (4 + 5 * 9) * 2]
    colours = {tuple(pixel) for pixel in found_row.reshape(-1, 3)}
    assert colours == {env_module._BACKGROUND, env_module._FOUND_COLOR}


def test_long_lines_are_cut_and_other_characters_drawn_as_question_marks():
    long_line = "turn  1 | " + "x" * 200
    frame = transcript_frame([long_line, "caf\u00e9 \t|~"], split="test", num_images=3, turn=1, max_turns=2)
    assert frame.shape == (text_height(2), 1456, 3)
    lines = read_frame(frame)
    assert lines[2] == long_line[: FRAME_COLUMNS - 3] + "..." and len(lines[2]) == FRAME_COLUMNS
    assert lines[3] == "caf? ?|~"
    # More lines than the frame has rows are dropped, never enlarging it.
    crowded = transcript_frame(["a"] * 50, split="test", num_images=3, turn=1, max_turns=2)
    assert crowded.shape == frame.shape


def test_check_env_passes_with_rgb_array_and_with_every_declared_mode(capsys):
    assert "rgb_array" in dialog_env.DialogRetrievalEnv.metadata["render_modes"]
    gym_check_env(make().unwrapped, skip_render_check=False)
    # Without a render mode, the checker makes one env per declared mode through the spec.
    gym_check_env(gym.make("DialogRetrieval-v0", catalog=SMALL).unwrapped, skip_render_check=False)
    capsys.readouterr()


def test_render_collection_gives_a_video_array():
    env = RenderCollection(make(max_turns=3))
    env.reset(seed=0)
    for action in (1, 2, 3):
        env.step(action)
    frames = env.render()
    assert len(frames) == 4
    video = np.stack(frames)
    assert video.shape == (4, expected_height(3), 1456, 3) and video.dtype == np.uint8


def test_vector_env_frames_equal_sync_vector_env_and_stack():
    kwargs = {"catalog": SMALL, "render_mode": "rgb_array", "max_turns": 2}
    native = gym.make_vec("DialogRetrieval-v0", num_envs=3, **kwargs)
    reference = gym.make_vec("DialogRetrieval-v0", num_envs=3, vectorization_mode="sync", **kwargs)
    assert "rgb_array" in native.metadata["render_modes"]
    native.reset(seed=2)
    reference.reset(seed=2)
    for step in range(5):  # includes autoresets
        frames = native.render()
        expected = reference.render()
        assert isinstance(frames, tuple) and len(frames) == 3
        for frame, expected_frame in zip(frames, expected):
            assert frame.dtype == np.uint8
            np.testing.assert_array_equal(frame, expected_frame)
        assert np.stack(frames).shape == (3, expected_height(2), 1456, 3)
        actions = np.array([step, step + 1, step + 2])
        native.step(actions)
        reference.step(actions)


def test_same_step_vector_frames_show_the_new_dialog():
    envs = dialog_env.DialogRetrievalVectorEnv(
        num_envs=2, catalog=SMALL, render_mode="rgb_array", max_turns=1, autoreset_mode="SameStep"
    )
    envs.reset(seed=0)
    envs.step(np.array([1, 2]))  # both truncated and restarted in the same step
    for frame in envs.render():
        lines = read_frame(frame[PANEL_HEIGHT:])
        assert lines[0].endswith("turn 0/1") and lines[2].startswith("turn  0 |") and lines[3] == ""
