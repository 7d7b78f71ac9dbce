"""The README's Python tour runs as written, and its test command is the one CI runs."""
import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


@pytest.mark.slow
def test_python_tour_runs():
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert len(blocks) >= 3
    namespace: dict = {}
    exec(compile("\n".join(blocks), str(README), "exec"), namespace)
    assert namespace["traj"].states.shape == (101, 2)
    assert namespace["history"].train_loss[-1] < namespace["history"].train_loss[0]


def test_readme_has_exactly_two_setup_commands_and_ci_runs_the_second():
    text = README.read_text()
    setup = text.split("## Set up", 1)[1].split("\n## ", 1)[0]
    commands = re.findall(r"```bash\n(.*?)```", setup, flags=re.S)
    assert len(commands) == 2 and all(c.strip().count("\n") == 0 for c in commands)
    assert "<!-- test-command -->" in setup and "pytest" in commands[1]
    ci = (README.parent / ".ci" / "run").read_text()
    assert "test-command" in ci
