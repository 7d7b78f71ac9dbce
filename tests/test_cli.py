"""The `gradlens` command line: output and one-line errors."""
import subprocess
import sys

from gradlens import cli


def test_systems_lists_every_system_with_a_finite_probe_return(capsys):
    assert cli.main(["systems", "--horizon", "5"]) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.split() and line.split()[0] in cli.envs.names()]
    assert len(rows) == len(cli.envs.names()) == 14
    for line in rows:
        fields = line.split()
        assert fields[3] == "5" and float(fields[5]) == float(fields[5])  # horizon override; return is not NaN


def test_bad_input_is_one_line_without_traceback():
    proc = subprocess.run([sys.executable, "-m", "gradlens.cli", "systems", "--horizon", "0"],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().count("\n") == 0 and "horizon must be" in proc.stderr
