"""The `gradlens` command line: output and one-line errors."""
import subprocess
import sys

from gradlens import cli, envs


def test_systems_lists_every_system_with_a_finite_probe_return(capsys, monkeypatch):
    # the Brax systems compile for minutes: tests/test_physics.py lists them (with and without the physics extra)
    monkeypatch.setattr(envs, "_BUILDERS", {k: v for k, v in envs._BUILDERS.items() if k not in envs.PHYSICS})
    assert cli.main(["systems", "--horizon", "5"]) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.split() and line.split()[0] in envs.names()]
    assert len(rows) == len(envs.names()) == 14
    for line in rows:
        fields = line.split()
        assert fields[3] == "5" and float(fields[5]) == float(fields[5])  # horizon override; return is not NaN


def test_bad_input_is_one_line_without_traceback():
    proc = subprocess.run([sys.executable, "-m", "gradlens.cli", "systems", "--horizon", "0"],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().count("\n") == 0 and "horizon must be" in proc.stderr


def test_import_and_help_load_no_jax_and_the_clis_vocabularies_are_the_packages():
    """`import gradlens` and `gradlens --help` stay light (JAX, SciPy and pandas load on first use), while the public
    names resolve to the functions and classes they always were."""
    from pathlib import Path

    program = ("import sys, gradlens, gradlens.cli as c; c.build_parser().format_help(); "
               "print(sorted(m for m in ('jax', 'scipy', 'pandas', 'haiku', 'streamlit') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[1]).stdout
    assert out.strip() == "[]"
    import gradlens as gl
    from gradlens import policies
    from gradlens.training.methods import bpo

    assert callable(gl.rollout) and callable(gl.conclusions) and gl.TrainConfig.__name__ == "TrainConfig"
    assert cli.TIME_INPUTS == policies.TIME_INPUTS and cli.NONFINITE_POLICY_GRAD == bpo.NONFINITE_POLICY_GRAD
    from gradlens.training.bpo import UPDATE_RULES
    assert cli.UPDATE_RULES == UPDATE_RULES
