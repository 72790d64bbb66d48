"""The README's examples run as written."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def _block_after(marker: str) -> str:
    text = README.read_text()
    match = re.search(re.escape(marker) + r"\s*```python\n(.*?)```", text, flags=re.S)
    assert match, f"no python block after {marker!r} in the README"
    return match.group(1)


def test_custom_agent_example_runs_and_prints_a_turn_table():
    code = _block_after("<!-- custom-agent-example -->")
    assert len(code.splitlines()) <= 30  # "about 20 lines" of agent, plus its evaluation
    output = io.StringIO()
    namespace: dict = {"__name__": "readme_example"}
    with contextlib.redirect_stdout(output):
        exec(compile(code, str(README), "exec"), namespace)
    lines = output.getvalue().splitlines()
    assert lines[0].startswith("| turn | shown-image rank pct. (%) | success by turn (%) |")
    assert len(lines) == 2 + 10  # header, separator, one row per turn
    result = namespace["result"]
    assert result.success.shape == (100, 10) and result.ranking_percentile is None
    again = namespace["evaluate"](namespace["NearestUnseenAgent"](), namespace["episodes"], {"split": "test"})
    assert (again.shown_percentile == result.shown_percentile).all()  # a deterministic agent, replayed
