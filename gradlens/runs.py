"""Run store: one folder per run, crash-safe on disk, read back as pandas DataFrames.

On-disk format of a run folder `<root>/<name>/` (every file is written atomically: a hidden temporary file
`.<file>.<random>.tmp` in the same folder, fsync, `os.replace`, fsync of the folder; a reader never sees half a file):

    config.json          the run's configuration, JSON with sorted keys; fixed at creation (resume needs the same one)
    status.json          {"state": "running" | "done" | "failed", "kind": "train" | ..., "created": ISO-8601 UTC,
                          "updated": ISO-8601 UTC (the heartbeat: a running writer renews it, `heartbeat`),
                          "pid": int, "host": str (the writing process), "reason": str | null,
                          ...extra keys of the last `set_status` / `heartbeat`}
    metrics.parquet      one row per (seed, evaluation), long format: `env_steps` (int64), `seed` (int64), then float
                         columns such as return, model_loss, policy_grad_norm, cosine_to_simulator,
                         relative_error_to_simulator, wall_time (seconds). Only the first `metrics_rows` rows named
                         by the commit marker are committed; rows past them are ignored.
    checkpoint.npz       the state pytree's leaves in `jax.tree_util` flatten order as `leaf_00000`, `leaf_00001`, ...,
                         plus `meta` (JSON text: step, metrics_rows, token, leaf paths and dtypes). No tree structure:
                         loading unflattens with a template pytree `like`.
    checkpoint.prev.npz  the checkpoint committed before it (the last good one if the newest is damaged)
    checkpoint.json      the commit marker, written last: {"step", "metrics_rows", "token", "saved",
                         "previous": {"step", "metrics_rows", "token"} | null}
    anything else        report.json, *.html, ...: free for other tools (`scan` flags a report.json that is not JSON)

`save_checkpoint` commits in this order, so a process killed at any instant leaves the marker's checkpoint and its
first `metrics_rows` metrics rows (all with env_steps <= step) on disk: (1) metrics.parquet <- all rows so far;
(2) the committed checkpoint.npz is renamed to checkpoint.prev.npz; (3) checkpoint.npz <- the new state with a fresh
token; (4) checkpoint.json <- the marker naming that token. `load_checkpoint` looks for the marker's token in either
file and falls back, with a warning, to the previous entry when that file is unreadable. One writer per run folder.

PRNG keys: raw uint32 keys (`jax.random.PRNGKey`, `split`) are arrays like any other and round-trip bit-exactly;
typed keys (`jax.random.key`) are stored as their key data and re-wrapped with the template leaf's implementation
(the template must then hold a concrete key, not a `jax.ShapeDtypeStruct`). Loaded leaves are NumPy arrays.

API: `create`, `set_status`, `heartbeat`, `save_checkpoint` write (trainer side); `check_same_run`,
`load_checkpoint`, `load_config`, `status`, `interrupted`, `load` (one run's metrics), `scan` (one row per run folder,
damaged ones flagged "corrupt", dead ones "interrupted"), `scan_metrics` (all healthy runs' metrics) read (analysis,
plots, app, CLI side). Bad paths and values raise ValueError.
"""
from __future__ import annotations

import dataclasses
import datetime
import io
import json
import os
import re
import secrets
import socket
import time
import warnings
import zipfile
from pathlib import Path
from typing import Any

import jax
import numpy as np
import pandas as pd

from gradlens.files import fsync_dir, write_bytes_atomic

STATES = ("running", "done", "failed")
REQUIRED_COLUMNS = ("env_steps", "seed")
CONFIG_COLUMNS = ("system", "method", "horizon")  # top-level config keys broadcast as columns by `load`
SCAN_COLUMNS = ("name", "path", "kind", "state", "reason", "system", "method", "horizon", "n_seeds", "env_steps",
                "final_return", "step", "created", "updated", "error")
FILTERS = ("kind", "state", *CONFIG_COLUMNS)  # `scan_metrics` filters
CONFIG, STATUS, METRICS = "config.json", "status.json", "metrics.parquet"
CHECKPOINT, PREVIOUS, MARKER = "checkpoint.npz", "checkpoint.prev.npz", "checkpoint.json"
REPORT = "report.json"  # an audit's report: not the store's, but `scan` flags a damaged one
_UNREADABLE = (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile)
STALE_S = 1800.0  # a "running" run of another host whose heartbeat is older than this (seconds) is "interrupted"


# ---------------------------------------------------------------------------------------------------- atomic files
def write_json_atomic(path, obj) -> None:
    """Write `obj` (dicts, lists, tuples, numbers, strings, NumPy/JAX scalars and arrays, paths, dataclasses) as
    indented JSON with sorted keys, atomically."""
    write_bytes_atomic(path, _dumps(obj).encode())


def _jsonable(value, where: str = "value"):
    """`value` with tuples, NumPy/JAX values, paths and dataclasses turned into JSON types; ValueError otherwise."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = dataclasses.asdict(value)
    if isinstance(value, dict):
        bad = [k for k in value if not isinstance(k, str)]
        if bad:
            raise ValueError(f"{where}: JSON keys must be strings, got {bad[0]!r}")
        return {k: _jsonable(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, (np.ndarray, np.generic, jax.Array)):
        return _jsonable(np.asarray(value).tolist(), where)
    raise ValueError(f"{where} of type {type(value).__name__} cannot be stored as JSON; allowed: str, int, float, "
                     "bool, None, lists, tuples, dicts, NumPy/JAX numbers and arrays, paths, dataclasses")


def _dumps(obj) -> str:
    return json.dumps(_jsonable(obj), sort_keys=True, indent=2) + "\n"


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise ValueError(f"{path} is missing") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path} is corrupt: {e}") from e


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds")


# ---------------------------------------------------------------------------------------------------- run folders
def _run_dir(path) -> Path:
    run = Path(path)
    if _printable(run.name) != run.name:
        raise ValueError(f"{_printable(str(run))} is unreadable: its folder name is not valid UTF-8 "
                         f"({os.fsencode(run.name)!r}); rename it")
    if not run.is_dir():
        raise ValueError(f"{run} is not a run folder: no such directory")
    if not (run / CONFIG).is_file():
        raise ValueError(f"{run} is not a gradlens run folder: it has no {CONFIG}")
    return run


def _printable(text: str) -> str:
    """`text` with the undecodable bytes of a file name (surrogate escapes) shown as U+FFFD."""
    return os.fsencode(text).decode("utf-8", "replace")


def create(root, config, name: str | None = None, kind: str = "train") -> Path:
    """Create the run folder `root/name` with `config` (a dict or dataclass) and status "running"; return its path.

    `name` defaults to `<system>-<method>-<UTC time>` (from the config's keys; a new suffix if taken). An existing
    run folder with the same config (and kind) is resumed: status back to "running", stale temporary files removed.
    ValueError for a different config, a non-run folder in the way, a bad name, or a location that cannot be written.
    """
    config = _jsonable(config, "config")
    if not isinstance(config, dict):
        raise ValueError(f"config must be a dict or a dataclass, got {type(config).__name__}")
    if not isinstance(kind, str) or not kind:
        raise ValueError(f"kind must be a non-empty string, got {kind!r}")
    root = Path(root)
    if name is None:
        name = _fresh_name(root, config, kind)
    elif not isinstance(name, str) or not re.fullmatch(r"[^._/\\][^/\\]*", name):
        raise ValueError(f"run name must be a plain folder name (no '/' or '\\', not starting with '.' or '_'), "
                         f"got {name!r}")
    run = root / name
    try:
        run.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ValueError(f"cannot write to {run}: {e.strerror or e}") from e
    if (run / CONFIG).exists():
        check_same_run(run, config, kind)
        for tmp in run.glob(".*.tmp"):
            tmp.unlink(missing_ok=True)
        _write_status(run, "running", None, kind, {})
        return run
    if any(not p.name.startswith(".") for p in run.iterdir()):
        raise ValueError(f"{run} exists and is not a gradlens run folder (no {CONFIG}); choose another name / --out")
    write_json_atomic(run / CONFIG, config)  # first: a folder with a config is a run; status is rewritten on resume
    _write_status(run, "running", None, kind, {})
    return run


def check_same_run(run_dir, config, kind: str = "train") -> None:
    """ValueError unless the run folder `run_dir` holds `config` (a dict or dataclass) and `kind`; writes nothing."""
    run, config = Path(run_dir), _jsonable(config, "config")
    old = load_config(run)
    if _dumps(old) != _dumps(config):
        keys = sorted(k for k in set(old) | set(config) if old.get(k, ...) != config.get(k, ...))
        raise ValueError(f"run folder {run} exists with a different config (differing keys: {', '.join(keys)}); "
                         "resume it with the same config or choose another name / --out")
    old_kind = _read_status_or_empty(run).get("kind", kind)
    if old_kind != kind:
        raise ValueError(f"run folder {run} holds a {old_kind!r} run, not {kind!r}; choose another name / --out")


def _fresh_name(root: Path, config: dict, kind: str) -> str:
    parts = [str(config[k]) for k in ("system", "method") if config.get(k) is not None] or [kind]
    base = re.sub(r"[^A-Za-z0-9_.-]+", "_", "-".join(parts)) + time.strftime("-%Y%m%d-%H%M%S", time.gmtime())
    name, n = base, 1
    while (root / name).exists():
        n += 1
        name = f"{base}-{n}"
    return name


def load_config(path) -> dict:
    """The run's config.json as a dict; ValueError if `path` is not a run folder or the file is corrupt."""
    run = _run_dir(path)
    config = _read_json(run / CONFIG)
    if not isinstance(config, dict):
        raise ValueError(f"{run / CONFIG} is corrupt: expected a JSON object, got {type(config).__name__}")
    return config


def status(path) -> dict:
    """The run's status.json: state, kind, created, updated, reason and any extra keys."""
    run = _run_dir(path)
    st = _read_json(run / STATUS)
    if not isinstance(st, dict) or st.get("state") not in STATES:
        raise ValueError(f"{run / STATUS} is corrupt: expected an object with state in {STATES}, got {st!r:.200}")
    return st


def set_status(run_dir, state: str, reason: str | None = None, **extra) -> dict:
    """Set the run's state ("running", "done" or "failed"; a failure needs a `reason`) and return the new status.

    `extra` keys (JSON-able, e.g. step=...) are stored beside it, replacing those of the previous call.
    """
    run = _run_dir(run_dir)
    if state not in STATES:
        raise ValueError(f"state must be one of {', '.join(STATES)}; got {state!r}")
    if state == "failed" and not reason:
        raise ValueError("a failed run needs a reason (what failed, at which step)")
    clash = sorted({"kind", "created", "updated", "pid", "host"} & set(extra))
    if clash:
        raise ValueError(f"status keys {', '.join(clash)} are managed by the run store; pass other extra keys")
    return _write_status(run, state, reason, None, extra)


def heartbeat(run_dir, **extra) -> dict:
    """Renew a running run's `updated` time (its heartbeat) and writer pid/host, state and reason kept; `extra` keys
    as in `set_status`. Returns the new status."""
    st = status(run_dir)
    return set_status(run_dir, st["state"], st.get("reason"), **extra)


def interrupted(st: dict) -> str | None:
    """Why a "running" status belongs to no live writer (its process is gone from this host, or, on another host,
    its heartbeat is older than STALE_S), else None (a live run, a finished one, or one of an older store)."""
    pid, host = st.get("pid"), st.get("host")
    if st.get("state") != "running" or not isinstance(pid, int) or not isinstance(host, str):
        return None
    if host == socket.gethostname():
        return None if _alive(pid) else f"its process {pid} is gone"
    try:
        age = time.time() - datetime.datetime.fromisoformat(st["updated"]).timestamp()
    except (KeyError, TypeError, ValueError):
        return None
    return f"no heartbeat from {host} for {age / 60:.0f} min" if age > STALE_S else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # e.g. another user's process: it exists
        return True
    return True


def _read_status_or_empty(run: Path) -> dict:
    try:
        st = _read_json(run / STATUS)
    except ValueError:  # missing (crash inside `create`) or damaged: rewritten by the caller
        return {}
    return st if isinstance(st, dict) else {}


def _write_status(run: Path, state: str, reason, kind: str | None, extra: dict) -> dict:
    old, now = _read_status_or_empty(run), _now()
    new = {**_jsonable(extra, "status"), "state": state, "kind": kind or old.get("kind", "train"),
           "created": old.get("created", now), "updated": now, "reason": None if reason is None else str(reason),
           "pid": os.getpid(), "host": socket.gethostname()}
    write_json_atomic(run / STATUS, new)
    return new


# ---------------------------------------------------------------------------------------------------- checkpoints
def save_checkpoint(run_dir, state, step: int, metrics_rows) -> None:
    """Commit `state` (a pytree of arrays, as at env step `step`) together with all metrics rows so far.

    `metrics_rows`: a DataFrame or a list of dicts of scalars, with integer columns `env_steps` <= `step` and `seed`;
    pass every row since the start (the committed ones first, unchanged). ValueError, with nothing written, for a
    NaN in a floating leaf (the last good checkpoint stays), a non-array leaf, or bad rows.
    """
    run = _run_dir(run_dir)
    if isinstance(step, bool) or not isinstance(step, (int, np.integer)) or step < 0:
        raise ValueError(f"step must be an integer >= 0 (env steps), got {step!r}")
    step = int(step)
    frame = _metrics_frame(metrics_rows)
    if len(frame) and frame["env_steps"].max() > step:
        raise ValueError(f"metrics rows must have env_steps <= step {step}; got env_steps {frame['env_steps'].max()}")
    paths, leaves = _state_leaves(state, step)
    marker = _read_marker(run)
    entries = _entries(marker)
    in_checkpoint, in_previous = _token_of(run / CHECKPOINT), _token_of(run / PREVIOUS)
    keep = next((e for e in entries if e["token"] in (in_checkpoint, in_previous)), None)  # becomes "previous"
    if keep is not None and len(frame) < keep["metrics_rows"]:
        raise ValueError(f"got {len(frame)} metrics rows but {keep['metrics_rows']} are committed in {run}; pass all "
                         "rows so far (those returned by load_checkpoint, then the new ones)")
    entry = {"step": step, "metrics_rows": len(frame), "token": secrets.token_hex(8)}
    table, archive = io.BytesIO(), io.BytesIO()
    try:
        frame.to_parquet(table, index=False)
    except (ValueError, TypeError, ImportError) as e:  # pyarrow's ArrowInvalid / ArrowTypeError subclass these
        raise ValueError(f"metrics rows cannot be stored as parquet: {e}") from e
    meta = {**entry, "paths": paths, "dtypes": [str(a.dtype) for a in leaves]}
    np.savez(archive, meta=np.array(json.dumps(meta)), **{f"leaf_{i:05d}": a for i, a in enumerate(leaves)})

    write_bytes_atomic(run / METRICS, table.getvalue())  # (1)
    if keep is not None and keep["token"] == in_checkpoint:  # (2)
        try:
            os.replace(run / CHECKPOINT, run / PREVIOUS)
        except OSError as e:
            raise ValueError(f"cannot write to {run / PREVIOUS}: {e.strerror or e}") from e
        fsync_dir(run)
    write_bytes_atomic(run / CHECKPOINT, archive.getvalue())  # (3)
    write_json_atomic(run / MARKER, {**entry, "saved": _now(), "previous": keep})  # (4) the commit


def load_checkpoint(run_dir, like):
    """The last committed `(state, step, metrics)`, or None if the run has no checkpoint yet.

    `like`: a template pytree with the saved structure (arrays or `jax.ShapeDtypeStruct`s); every leaf's shape and
    dtype must match (ValueError naming the leaf otherwise). `metrics`: the committed rows, a DataFrame.
    """
    run = _run_dir(run_dir)
    marker = _read_marker(run)
    if marker is None:
        return None
    problems, entries = {}, _entries(marker)
    for entry in entries:
        for file in (run / CHECKPOINT, run / PREVIOUS):
            try:
                meta, leaves = _read_npz(file, entry["token"])
            except _UNREADABLE as e:
                problems[file.name] = f"{file.name}: {e}"
                continue
            if meta is not None:
                why = "; ".join(problems.values()) or "file missing"
                if entry is not entries[0]:
                    warnings.warn(f"{run}: the checkpoint at step {marker['step']} is unreadable ({why}); resuming "
                                  f"from the previous one at step {entry['step']}", stacklevel=2)
                state = _unflatten(like, meta, leaves, file)
                return state, entry["step"], _committed_metrics(run, entry["metrics_rows"])
    raise ValueError(f"{run}: no readable checkpoint for the committed step {marker['step']} or the one before "
                     f"({'; '.join(problems.values()) or 'checkpoint files missing'})")


def _is_key(x) -> bool:
    return isinstance(x, jax.Array) and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)


def _state_leaves(state, step: int) -> tuple[list[str], list[np.ndarray]]:
    paths, leaves = [], []
    for path, leaf in jax.tree_util.tree_flatten_with_path(state)[0]:
        name = jax.tree_util.keystr(path) or "<root>"
        arr = np.asarray(jax.random.key_data(leaf) if _is_key(leaf) else leaf)
        if arr.dtype == object:
            raise ValueError(f"checkpoint leaf {name} is not an array (type {type(leaf).__name__})")
        if jax.dtypes.issubdtype(arr.dtype, np.inexact) and np.isnan(arr).any():
            raise ValueError(f"checkpoint leaf {name} holds NaN at step {step}; not saved, the last good checkpoint "
                             "is kept")
        paths.append(name)
        leaves.append(arr)
    return paths, leaves


def _read_npz(file: Path, token: str) -> tuple[dict | None, list[np.ndarray]]:
    """(meta, leaves) of a checkpoint file holding `token`; (None, []) if absent or holding another token."""
    if not file.exists():
        return None, []
    with np.load(file, allow_pickle=False) as z:
        meta = json.loads(str(z["meta"]))
        if meta.get("token") != token:
            return None, []
        return meta, [z[f"leaf_{i:05d}"] for i in range(len(meta["paths"]))]  # reading checks the zip CRCs


def _token_of(file: Path) -> str | None:
    try:
        with np.load(file, allow_pickle=False) as z:
            return json.loads(str(z["meta"])).get("token")
    except _UNREADABLE:
        return None


def _unflatten(like, meta: dict, leaves: list[np.ndarray], file: Path):
    template, treedef = jax.tree_util.tree_flatten_with_path(like)
    if len(template) != len(leaves):
        raise ValueError(f"{file} holds {len(leaves)} leaves but the template `like` has {len(template)}; was it "
                         "saved from another configuration?")
    out = []
    for (path, t), arr, dtype in zip(template, leaves, meta["dtypes"]):
        key = _is_key(t)
        want = np.asarray(jax.random.key_data(t)) if key else t
        shape = tuple(getattr(want, "shape", np.shape(want)))
        want_dtype = np.dtype(want.dtype if hasattr(want, "dtype") else np.asarray(want).dtype)
        if arr.shape != shape or dtype != str(want_dtype):
            raise ValueError(f"checkpoint leaf {jax.tree_util.keystr(path) or '<root>'} in {file} is "
                             f"{dtype}{list(arr.shape)} but the template wants {want_dtype}{list(shape)}")
        arr = arr.view(want_dtype) if arr.dtype != want_dtype else arr  # e.g. bfloat16 comes back as raw void
        out.append(jax.random.wrap_key_data(arr, impl=jax.random.key_impl(t)) if key else arr)
    return jax.tree_util.tree_unflatten(treedef, out)


def _read_marker(run: Path) -> dict | None:
    path = run / MARKER
    if not path.exists():
        return None
    marker = _read_json(path)
    if not (_is_entry(marker) and (marker.get("previous") is None or _is_entry(marker["previous"]))):
        raise ValueError(f"{path} is corrupt: expected step, metrics_rows, token and previous, got {marker!r:.200}")
    return marker


def _is_entry(entry) -> bool:
    return isinstance(entry, dict) and all(
        isinstance(entry.get(k), t) and not isinstance(entry.get(k), bool)
        for k, t in (("step", int), ("metrics_rows", int), ("token", str)))


def _entries(marker: dict | None) -> list[dict]:
    """The committed checkpoints, newest first: the marker's own and the one before it."""
    if marker is None:
        return []
    return [{k: marker[k] for k in ("step", "metrics_rows", "token")}] + [e for e in [marker.get("previous")] if e]


# ---------------------------------------------------------------------------------------------------- metrics
def _metrics_frame(rows) -> pd.DataFrame:
    if isinstance(rows, pd.DataFrame):
        frame = rows.reset_index(drop=True).copy()
    else:
        try:
            frame = pd.DataFrame([{k: _scalar(v, k) for k, v in dict(r).items()} for r in rows])
        except (TypeError, ValueError) as e:
            raise ValueError(f"metrics_rows must be a DataFrame or a list of dicts of scalars: {e}") from e
    if frame.empty and len(frame.columns) == 0:
        frame = pd.DataFrame({c: pd.Series(dtype="int64") for c in REQUIRED_COLUMNS})
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"metrics rows need the columns {', '.join(REQUIRED_COLUMNS)}; missing {', '.join(missing)}")
    if not all(isinstance(c, str) for c in frame.columns):
        raise ValueError(f"metrics column names must be strings, got {list(frame.columns)}")
    for c in REQUIRED_COLUMNS:
        col = pd.to_numeric(frame[c], errors="coerce")
        if col.isna().any() or not np.isfinite(col).all() or (col != np.round(col)).any():
            raise ValueError(f"metrics column {c!r} must hold integers, got {frame[c].tolist()[:8]}")
        frame[c] = col.astype("int64")
    return frame


def _scalar(value, column: str):
    if isinstance(value, (np.ndarray, np.generic, jax.Array)):
        if np.ndim(value) != 0:
            raise ValueError(f"column {column!r} holds an array of shape {np.shape(value)}, not a scalar")
        return np.asarray(value).item()
    return value


def _committed_metrics(run: Path, n: int) -> pd.DataFrame:
    if n == 0 and not (run / METRICS).exists():
        return _metrics_frame([])
    try:
        frame = pd.read_parquet(run / METRICS)
    except Exception as e:  # pyarrow raises several types for a truncated or foreign file
        raise ValueError(f"{run / METRICS} is unreadable: {type(e).__name__}: {e}") from e
    if len(frame) < n:
        raise ValueError(f"{run / METRICS} holds {len(frame)} rows but {n} are committed: the file was damaged")
    return frame.iloc[:n].reset_index(drop=True)


def setting_label(config: dict) -> str | None:
    """The training settings of a run config that differ from `TrainConfig`'s defaults (the paper's), as
    "key=value key=value" sorted by key, "default" when none do; identity keys (`CONFIG_COLUMNS`, seeds) left out.
    None when `config` is not a training config (an audit's). Runs of one label with other seeds pool into one
    distribution; runs of different labels never do."""
    from gradlens.training.loop import TrainConfig  # lazy: the run store is read without building a trainer

    try:
        run = TrainConfig.from_dict(config)
    except (ValueError, TypeError):
        return None
    defaults = TrainConfig(system=run.system, method=run.method).to_dict()
    skip = {*CONFIG_COLUMNS, "seed", "seeds"}
    diffs = [f"{k}={_label_value(v)}" for k, v in sorted(config.items())
             if k not in skip and _label_value(v) != _label_value(defaults.get(k))]
    return " ".join(diffs) if diffs else "default"


def _label_value(value) -> str:
    return ",".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)


def load(path) -> pd.DataFrame:
    """The run's committed metrics, one row per (seed, evaluation), with columns `run` (folder name), the config's
    `system`, `method`, `horizon` (None where the config lacks them) and, for training runs, `setting`
    (`setting_label`) in front."""
    run = _run_dir(path)
    config = load_config(run)
    marker = _read_marker(run)  # before the metrics: they are written first, so they hold at least its rows
    frame = _committed_metrics(run, marker["metrics_rows"] if marker else 0)
    front = {"run": run.name, **{k: config.get(k) for k in CONFIG_COLUMNS}}
    setting = setting_label(config)
    if setting is not None:
        front["setting"] = setting
    for i, (k, v) in enumerate((k, v) for k, v in front.items() if k not in frame.columns):
        frame.insert(i, k, v)
    return frame


def scan(root) -> pd.DataFrame:
    """One row per run folder under `root` (sorted by name; hidden and `_`-prefixed folders skipped), columns
    `SCAN_COLUMNS`. A damaged folder gets state "corrupt" and an `error` message instead of raising; `env_steps` is
    the last evaluation's, `final_return` the mean `return` over seeds there, `step` the checkpoint's, `updated` the
    last status change, heartbeat or checkpoint. A "running" run whose writer is gone (`interrupted`) gets state
    "interrupted" and, for training runs, the `gradlens train --resume` command in `reason`. A folder whose name is
    not valid UTF-8 is listed "corrupt" too, its name with U+FFFD for the bad bytes. Missing or empty root: no rows."""
    root = Path(root)
    if root.exists() and not root.is_dir():
        raise ValueError(f"runs root {root} is a file, not a folder")
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith((".", "_"))) \
        if root.is_dir() else []
    return pd.DataFrame([_scan_one(p) for p in folders], columns=list(SCAN_COLUMNS))


def _scan_one(run: Path) -> dict:
    row = dict.fromkeys(SCAN_COLUMNS)
    row.update(name=_printable(run.name), path=_printable(str(run)))
    try:
        config, st, marker = load_config(run), status(run), _read_marker(run)
        frame = _committed_metrics(run, marker["metrics_rows"] if marker else 0)
        if (run / REPORT).exists():
            _read_json(run / REPORT)
        row.update({k: st.get(k) for k in ("kind", "state", "reason", "created", "updated")})
        gone = interrupted(st)
        if gone is not None:
            row.update(state="interrupted", reason=f"{gone}; continue it with: gradlens train --resume {run}"
                       if st.get("kind") == "train" else gone)
        row.update({k: config.get(k) for k in CONFIG_COLUMNS}, step=marker["step"] if marker else None)
        row["updated"] = max(str(st.get("updated")), str(marker.get("saved"))) if marker else st.get("updated")
        if len(frame):
            last = frame[frame["env_steps"] == frame["env_steps"].max()]
            row.update(n_seeds=frame["seed"].nunique(), env_steps=int(last["env_steps"].iloc[0]),
                       final_return=float(last["return"].mean()) if "return" in frame.columns else None)
    except Exception as e:  # whatever is in a damaged folder, report it and go on with the others
        row.update(state="corrupt", error=f"{type(e).__name__}: {e}")
    return row


def scan_metrics(root, **filters) -> pd.DataFrame:
    """`load` of every healthy run under `root`, concatenated; `filters` keep runs whose scan column (kind, state,
    system, method, horizon) equals the value or is in the given list. Runs that could not be read are listed in
    `.attrs["problems"]` as dicts {name, path, error}."""
    unknown = sorted(set(filters) - set(FILTERS))
    if unknown:
        raise ValueError(f"unknown filter(s) {', '.join(unknown)}; valid filters: {', '.join(FILTERS)}")
    runs = scan(root)
    bad = runs["state"] == "corrupt"
    problems = runs.loc[bad, ["name", "path", "error"]].to_dict("records")
    runs = runs[~bad]
    for key, want in filters.items():
        runs = runs[runs[key].isin(list(want) if isinstance(want, (list, tuple, set, frozenset)) else [want])]
    frames = []
    for name, path in zip(runs["name"], runs["path"]):
        try:
            frames.append(load(path))
        except Exception as e:  # damaged since the scan
            problems.append({"name": name, "path": path, "error": f"{type(e).__name__}: {e}"})
    empty = pd.DataFrame(columns=["run", *CONFIG_COLUMNS, *REQUIRED_COLUMNS])
    out = pd.concat(frames, ignore_index=True) if frames else empty
    out.attrs["problems"] = problems
    return out
