"""The run configuration: each method's settings validated in their own constructor, the flat keywords and
config.json layout of older runs, and the training package's import graph (no cycle)."""
import ast
import dataclasses
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import gradlens.training
from gradlens import runs
from gradlens.training.loop import TrainConfig
from gradlens.training.methods import BPOConfig, ODTConfig, SACConfig
from gradlens.training.train import run_name


@pytest.mark.parametrize("build, message", [
    (lambda: BPOConfig(model_every=0), "model_every must be a positive integer, got 0"),
    (lambda: BPOConfig(policy_lr=-1e-3), "policy_lr must be a positive finite number, got -0.001"),
    (lambda: BPOConfig(entropy_coef=float("nan")), "entropy_coef must be a finite number, got nan"),
    (lambda: BPOConfig(nonfinite_policy_grad="skip"), "nonfinite_policy_grad must be one of stop, zero, got 'skip'"),
    (lambda: BPOConfig(remat=1), "remat must be true or false, got 1"),
    (lambda: BPOConfig(policy_time_input="hours"), "policy time input must be one of raw, unit, got 'hours'"),
    (lambda: SACConfig(discount=1.5), "sac discount must be a probability in [0, 1], got 1.5"),
    (lambda: SACConfig(tau=2.0), "sac tau must be a probability in [0, 1], got 2.0"),
    (lambda: SACConfig(hidden=()), "sac hidden must be a non-empty list of positive integers, got ()"),
    (lambda: SACConfig(n_critics=0), "sac n_critics must be a positive integer, got 0"),
    (lambda: ODTConfig(width=30, heads=4), "odt width 30 must be divisible by heads 4"),
    (lambda: ODTConfig(weight_decay=-1.0), "odt weight_decay must be a finite number >= 0, got -1.0"),
    (lambda: ODTConfig(lr=0), "odt lr must be a positive finite number, got 0"),
])
def test_each_method_config_validates_itself(build, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        build()


@pytest.mark.parametrize("values, message", [
    ({"method": "sac", "entropy_coef": -0.1}, "sac's fixed entropy coefficient α (entropy_coef) must be a finite "
                                              "number >= 0, got -0.1"),
    ({"method": "odt", "horizon": 5}, "odt context must be an integer in [1, 5]"),
    ({"method": "markov", "policy": "rnn"}, "'rnn'"),
    ({"system": "cancer", "horizon": 0}, "horizon must be a positive integer, got 0"),
    ({"seeds": 0}, "seeds must be a positive integer, got 0"),
    ({"seed": -2}, "seed must be an integer >= 0, got -2"),
])
def test_run_config_checks_the_settings_against_the_run(values, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        TrainConfig(**values)


def test_flat_keywords_route_into_the_nested_bpo_settings():
    flat = TrainConfig(method="markov", policy_lr=3e-4, remat=False, nonfinite_policy_grad="zero")
    nested = BPOConfig(policy_lr=3e-4, remat=False, nonfinite_policy_grad="zero")
    assert flat == TrainConfig(method="markov", bpo=nested)
    assert flat.policy_lr == flat.bpo.policy_lr == 3e-4 and flat.remat is False and flat.zeroes_nonfinite_policy_grad
    assert dataclasses.replace(flat, policy_lr=1e-3).bpo == dataclasses.replace(flat.bpo, policy_lr=1e-3)
    assert dataclasses.replace(flat, seeds=3).bpo == flat.bpo and dataclasses.replace(flat, seeds=3).seeds == 3
    assert not TrainConfig(method="sac", nonfinite_policy_grad="zero").zeroes_nonfinite_policy_grad
    with pytest.raises(TypeError, match="unknown option"):
        TrainConfig(learning_rate=1.0)


# config.json files as the first versions wrote them (no fields added later), and with every later field
OLD_CONFIGS = {
    "cancer-awm-rnn-H100-seed0": {
        "system": "cancer", "method": "awm-rnn", "horizon": 100, "total_steps": 5000, "warmup_steps": 1500,
        "model_every": 2, "policy_every": 16, "eval_every": 32, "model_batch": 64, "policy_batch": 16,
        "model_lr": 0.001, "policy_lr": 0.0001, "entropy_coef": 0.1, "grad_clip": 100.0, "policy": "mlp",
        "policy_hidden": [64, 64], "policy_input_grad": "stop", "noise_std": 0.0, "compare_to_simulator": True,
        "seed": 0, "seeds": 1},
    "glucose-markov-H50-tunit-zeronan-seeds3-12": {
        "system": "glucose", "method": "markov", "horizon": 50, "total_steps": 2000, "warmup_steps": 500,
        "model_every": 2, "policy_every": 16, "eval_every": 32, "model_batch": 64, "policy_batch": 16,
        "model_lr": 0.001, "policy_lr": 0.0003, "entropy_coef": 0.1, "grad_clip": 100.0, "policy": "mlp",
        "policy_hidden": [32], "policy_input_grad": 0.5, "noise_std": 0.01, "compare_to_simulator": False,
        "seed": 3, "seeds": 10, "remat": False, "simulator_grad_clip": 100.0, "policy_time_input": "unit",
        "nonfinite_policy_grad": "zero"},
    "cancer-sac-H100-seeds0-9": {
        "system": "cancer", "method": "sac", "horizon": 100, "total_steps": 5000, "warmup_steps": 1000,
        "model_every": 2, "policy_every": 16, "eval_every": 32, "model_batch": 64, "policy_batch": 16,
        "model_lr": 0.001, "policy_lr": 0.0001, "entropy_coef": 0.1, "grad_clip": 100.0, "policy": "mlp",
        "policy_hidden": [64, 64], "policy_input_grad": "stop", "noise_std": 0.0, "compare_to_simulator": True,
        "seed": 0, "seeds": 10, "nonfinite_policy_grad": "zero",
        "baseline": {"hidden": [256, 256], "lr": 0.0003, "discount": 0.99, "batch_size": 128, "tau": 0.005,
                     "n_critics": 2, "critic_every": 1, "actor_every": 1, "min_scale": 0.001}},
    "cancer-odt-H20-seed0": {
        "system": "cancer", "method": "odt", "horizon": 20, "total_steps": 640, "warmup_steps": 100,
        "model_every": 2, "policy_every": 16, "eval_every": 32, "model_batch": 64, "policy_batch": 16,
        "model_lr": 0.001, "policy_lr": 0.0001, "entropy_coef": 0.1, "grad_clip": 100.0, "policy": "mlp",
        "policy_hidden": [64, 64], "policy_input_grad": "stop", "noise_std": 0.0, "compare_to_simulator": True,
        "seed": 0, "seeds": 1,
        "baseline": {"context": 5, "width": 32, "layers": 1, "heads": 2, "batch_size": 32, "lr": 0.001,
                     "weight_decay": 0.0005, "grad_clip": 0.25, "pretrain_updates": 200, "update_every": 4,
                     "init_temperature": 0.1, "temperature_lr": 0.0001, "target_entropy": -1.0, "target_gain": 1.0}},
}


@pytest.mark.parametrize("name", OLD_CONFIGS)
def test_old_flat_config_json_loads_resumes_and_keeps_its_run_name(name, tmp_path):
    stored = OLD_CONFIGS[name]
    config = TrainConfig.from_dict(json.loads(json.dumps(stored)))
    assert json.dumps(config.to_dict(), sort_keys=True) == json.dumps(stored, sort_keys=True)
    assert run_name(config) == name
    run = runs.create(tmp_path, stored, name=name, kind="train")
    runs.check_same_run(run, config.to_dict())  # what a resume compares: the same config, byte for byte
    assert runs.setting_label(stored) is not None


def _imports(path: Path, modules: set[str]) -> set[str]:
    """The modules of `modules` that the file `path` imports anywhere in it (function bodies included)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}: a relative import"
            found.update(f"{node.module}.{alias.name}" if f"{node.module}.{alias.name}" in modules else node.module
                         for alias in node.names)
    return found & modules


def test_the_training_package_has_no_import_cycle():
    root = Path(gradlens.training.__file__).parent
    files = {".".join(["gradlens", *p.relative_to(root.parent).with_suffix("").parts]).removesuffix(".__init__"): p
             for p in root.rglob("*.py")}
    modules = set(files)
    graph = {module: _imports(path, modules) for module, path in files.items()}
    assert "gradlens.training.methods.sac" in graph and graph["gradlens.training.loop"]
    state = {}

    def visit(module, path):
        state[module] = "open"
        for child in sorted(graph[module]):
            assert state.get(child) != "open", f"import cycle: {' -> '.join([*path, child])}"
            if child not in state:
                visit(child, [*path, child])
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])


@pytest.mark.parametrize("module", ["gradlens.training.methods.sac", "gradlens.training.config"])
def test_a_method_module_imports_first_in_a_fresh_interpreter(module):
    proc = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True, text=True,
                          env={**os.environ, "JAX_PLATFORMS": "cpu"})
    assert proc.returncode == 0, proc.stderr
