"""Writing results: atomic files, provenance sidecars, and resumable chunked stages.

A stage is split into chunks that are computed and written one at a time; a chunk file exists
only once it is complete (written to a temporary name, then renamed). Running a stage again
skips the chunks already on disk, so a killed run resumes where it stopped and ends with the
same tables. A manifest records the config hash; a directory made by another config is refused.
"""
from __future__ import annotations

import ast
import fcntl
import hashlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import zipfile
from importlib import metadata
from pathlib import Path
from typing import Callable, Mapping, NamedTuple

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

PACKAGES = ("jax", "jaxlib", "neural-tangents", "numpyro", "blackjax", "optax", "numpy", "scipy", "pandas", "seaborn")


UMASK = os.umask(0)
os.umask(UMASK)


class StaleResultsError(RuntimeError):
    """Results on disk were made by a different configuration."""


class NonFiniteError(RuntimeError):
    """A raw table would hold a NaN or infinity where none is allowed."""


# Where a raw table may hold non-finite numbers: column -> rows (a function of the table giving a
# bool mask, or True for every row); the key ANY_COLUMN stands for every column not named. Each
# writer declares its own, next to the reason.
Allowed = Mapping[str, Callable[[pd.DataFrame], "pd.Series | bool"]]
EVERY_ROW: Callable[[pd.DataFrame], bool] = lambda frame: True
ANY_COLUMN = "*"


def check_finite(frame: pd.DataFrame, what: str, allowed: Allowed | None = None) -> None:
    """Raise NonFiniteError naming the column and rows if a float column of `frame` holds NaN or
    +-inf outside the rows `allowed` declares for it. Integer, bool and text columns cannot."""
    allowed = allowed or {}
    for column in frame.columns:
        values = frame[column]
        if not (pd.api.types.is_float_dtype(values) or pd.api.types.is_complex_dtype(values)):
            continue
        bad = ~np.isfinite(values.to_numpy())
        rows_allowed = allowed.get(column, allowed.get(ANY_COLUMN))
        if rows_allowed is not None:
            bad &= ~np.asarray(rows_allowed(frame), bool)
        if bad.any():
            rows = np.flatnonzero(bad)
            raise NonFiniteError(
                f"{what}: column {column!r} has {len(rows)} non-finite value(s) where none is allowed "
                f"(rows {rows[:8].tolist()}{' ...' if len(rows) > 8 else ''}, e.g. {values.iloc[rows[0]]}); "
                "nothing was written. This is a numerical failure upstream of the table: report it with the config")


def write_raw_table(frame: pd.DataFrame, path: Path, allowed: Allowed | None = None) -> None:
    """A stage's raw table, written atomically after check_finite. Wall-clock columns (is_timing)
    go to <stem>_timings.csv beside it, with the table's key columns (setting, chunk), so that the
    table itself is byte-identical in every run of the same config and seed."""
    timing = [c for c in frame.columns if is_timing(c)]
    check_finite(frame, str(path), allowed)
    if timing:
        keys = [c for c in TIMING_KEYS if c in frame.columns]
        atomic_write_csv(frame[keys + timing], timing_path(path))
    atomic_write_csv(frame.drop(columns=timing), path)


TIMING_KEYS = ("setting", "chunk")


def is_timing(column: str) -> bool:
    """Columns that hold wall-clock time (or rates made from it): different in every run."""
    return column == "seconds" or column.endswith(("_seconds", "_per_second", "_per_function"))


def timing_path(table: Path) -> Path:
    return Path(table).with_name(f"{Path(table).stem}_timings.csv")


def atomic_write_text(path: Path, text: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.chmod(tmp, 0o666 & ~UMASK)  # mkstemp makes the file private; results are for sharing
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_csv(frame: pd.DataFrame, path: Path) -> None:
    atomic_write_text(path, frame.to_csv(index=False))


def atomic_write_npz(path: Path, **arrays) -> None:
    """Arrays to an .npz file, written under a temporary name of its own (two writers never share
    one) and renamed; the temporary file is removed on any error (a full disk, an interrupt)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:  # a file object: np.savez adds no ".npz" to its name
            np.savez(handle, **arrays)
        os.chmod(tmp, 0o666 & ~UMASK)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def cached_npz(path: Path, make: Callable[[], dict]) -> dict[str, np.ndarray]:
    """The arrays of an .npz file that is a deterministic function of the config (chain starts, a
    population's points): made by make() and written when missing, and made again, with a warning,
    when the file is unreadable (truncated, garbage), so a damaged file costs a recomputation, not
    a traceback."""
    path = Path(path)
    for attempt in range(2):
        if path.exists():
            try:
                with open(path, "rb") as handle, np.load(handle) as f:  # closed even when np.load fails
                    return {k: f[k] for k in f.files}
            except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
                if attempt:
                    raise
                print(f"warning: {path} is unreadable ({type(err).__name__}); making it again", file=sys.stderr)
        atomic_write_npz(path, **make())
    raise AssertionError("unreachable")


def atomic_write_json(obj: dict, path: Path) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True,
                             cwd=Path(__file__).parent)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                               text=True, cwd=Path(__file__).parent).stdout.strip()
        return out.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def provenance(**extra) -> dict:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {"git_commit": git_commit(), "python": sys.version.split()[0], "platform": platform.platform(),
            "packages": versions, **extra}


def write_sidecar(table_path: Path, **extra) -> None:
    """JSON beside a table: provenance plus whatever the writer adds (config hash, wall time...)."""
    atomic_write_json(provenance(**extra), Path(table_path).with_suffix(".json"))


def code_fingerprint(source: str) -> str:
    """The code of a module without its prose: the dump of its syntax tree with every docstring
    removed (comments never reach the tree). Editing a comment or docstring keeps it; any change
    to what runs, names and literals included, changes it."""
    tree = ast.parse(source)
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and body
                and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
                and isinstance(body[0].value.value, str)):
            node.body = body[1:] or [ast.Pass()]
    return ast.dump(tree, annotate_fields=False, include_attributes=False)


def code_hash(stage: str) -> str:
    """Hash of the modules whose code decides a stage's raw results, so that chunks computed by
    other code are never silently mixed with new ones on resume; comments and docstrings do not
    count (code_fingerprint)."""
    here = Path(__file__).parent
    digest = hashlib.sha256()
    for name in stage_modules(stage):
        digest.update(code_fingerprint((here / name).read_text()).encode())
    return digest.hexdigest()[:12]


def stage_modules(stage: str) -> tuple[str, ...]:
    from study.stages import STAGES

    return STAGES[stage].code_modules()


class StageBusyError(RuntimeError):
    """Another process is writing the same stage directory."""


_HELD_LOCKS: dict[Path, int] = {}  # lock file -> its descriptor, held until exit


class Shard(NamedTuple):
    """This process's share of every stage when several processes split the chunks: shard `index`
    of `count` (python -m study --shard i/n, or a Slurm array's task). One process: 0 of 1."""
    index: int = 0
    count: int = 1


SHARD = Shard()  # set once by the command line (study/cli.py) before any stage runs


def _flock(path: Path, mode: int, directory: Path) -> None:
    held = _HELD_LOCKS.get(path)
    if held is not None:
        try:
            if os.fstat(held).st_ino == os.stat(path).st_ino:
                return  # this process holds it already (a stage run twice in one process)
        except FileNotFoundError:  # the directory was deleted (--fresh) since: lock the new one
            pass
        os.close(held)
        del _HELD_LOCKS[path]
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666 & ~UMASK)
    try:
        fcntl.flock(fd, mode | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise StageBusyError(f"another process is writing {directory} (its lock {path} is held): wait for it to "
                             "finish, then rerun; finished chunks are kept") from None
    _HELD_LOCKS[path] = fd


def lock_directory(directory: Path) -> None:
    """Hold an advisory lock (flock) on directory/.lock for the rest of this process, so that only
    one process writes a stage's chunks at a time; a second one gets StageBusyError at once. The
    shards of a split run (SHARD) share .lock and each holds its own .lock-<i>-of-<n> exclusively,
    so they write side by side while a second copy of a shard, or an unsplit run, is refused.
    The kernel drops the locks when the process ends, however it ends (kill -9 included)."""
    directory = directory.resolve()
    if SHARD.count == 1:
        _flock(directory / ".lock", fcntl.LOCK_EX, directory)
        return
    _flock(directory / ".lock", fcntl.LOCK_SH, directory)
    _flock(directory / f".lock-{SHARD.index}-of-{SHARD.count}", fcntl.LOCK_EX, directory)


def claim_directory(directory: Path, stage: str, config_hash: str, description: str) -> None:
    """Create `directory` for a stage with this config and code, or check that it belongs to them,
    and lock it for this process (lock_directory)."""
    directory.mkdir(parents=True, exist_ok=True)
    lock_directory(directory)
    manifest = directory / "manifest.json"
    ours = {"config_hash": config_hash, "code_hash": code_hash(stage)}
    if manifest.exists():
        found = json.loads(manifest.read_text())
        for key, what in (("config_hash", "config"), ("code_hash", "code (study/" + ", study/".join(stage_modules(stage)) + ")")):
            if found.get(key) != ours[key]:
                raise StaleResultsError(
                    f"{directory} holds {description} made with a different {what}: {key} {found.get(key)}, "
                    f"now {ours[key]}; run with --fresh (make ... STUDY_ARGS=--fresh) to recompute")
    else:
        atomic_write_json({**ours, "description": description}, manifest)


class CorruptChunkError(RuntimeError):
    """A finished chunk's files no longer match the checksums recorded when they were written."""


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def chunk_record(table: Path) -> tuple[dict, str | None]:
    """A finished chunk's record and why the chunk cannot be used (None: it can). The record
    (chunk_NNNNN.json) holds the SHA-256 of every file of the chunk (the table and any files its
    compute wrote) and the table's row count; a file that is missing, truncated, overwritten with
    garbage or from another run fails here."""
    meta = table.with_suffix(".json")
    try:
        record = json.loads(meta.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as err:
        return {}, f"its record {meta.name} is unreadable ({type(err).__name__})"
    files = record.get("files") if isinstance(record, dict) else None
    if not isinstance(files, dict) or table.name not in files:
        return {}, f"its record {meta.name} holds no checksums"
    for name, digest in files.items():
        path = table.parent / name
        if not path.is_file():
            return record, f"{name} is missing"
        if _sha256(path.read_bytes()) != digest:
            return record, f"{name} does not match the checksum recorded when it was written (truncated or changed)"
    return record, None


def run_chunks(directory: Path, n_chunks: int, compute: Callable[[int], tuple[pd.DataFrame, dict]],
               desc: str, progress: bool = True, allowed: Allowed | None = None,
               chunk_files: Callable[[int], list[Path]] = lambda c: [],
               mine: Callable[[int], bool] = lambda c: True) -> list[Path]:
    """Compute the chunks not yet on disk, writing each as it finishes; return the chunk tables.

    compute(c) returns the chunk's table and a dict of chunk statistics; chunk_files(c) names the
    other files compute(c) wrote that belong to the chunk (e.g. MCMC states). The table is written
    first and the record (chunk_NNNNN.json: statistics, row count, SHA-256 of every file) last, so a
    chunk is complete iff its record exists. A finished chunk whose files fail their checksums
    (chunk_record) is reported and computed again, never merged. A chunk table with a non-finite
    value outside `allowed` (check_finite) stops the stage before it is written, so the failure
    shows at the chunk that made it. Only the chunks c with mine(c) are computed (a shard's share);
    the others are left to their own process.
    """
    tables = [directory / f"chunk_{c:05d}.csv" for c in range(n_chunks)]
    todo = []
    for c, table in enumerate(tables):
        if not mine(c):
            continue
        if not table.with_suffix(".json").exists():
            todo.append(c)
        elif (problem := chunk_record(table)[1]) is not None:
            print(f"warning: {desc} chunk {c} ({table}): {problem}; computing it again", file=sys.stderr)
            table.with_suffix(".json").unlink()
            todo.append(c)
    share = sum(map(mine, range(n_chunks)))
    with tqdm(total=share, initial=share - len(todo), desc=desc, unit="chunk", disable=not progress,
              dynamic_ncols=True) as bar:
        for c in todo:
            table, stats = compute(c)
            check_finite(table, f"{desc} chunk {c}", allowed)
            atomic_write_csv(table, tables[c])
            files = {f.name: _sha256(f.read_bytes()) for f in [tables[c], *chunk_files(c)]}
            atomic_write_json({"chunk": c, **stats, "rows": len(table), "files": files}, tables[c].with_suffix(".json"))
            bar.update(1)
    return tables


def chunks_missing(tables: list[Path]) -> list[Path]:
    """The chunk tables whose record is not (yet) on disk."""
    return [p for p in tables if not p.with_suffix(".json").exists()]


def read_chunks(tables: list[Path]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """All chunk tables concatenated (each verified against its record), and one row of
    statistics per chunk."""
    missing = chunks_missing(tables)
    if missing:
        raise FileNotFoundError(f"{len(missing)} chunk(s) missing, first {missing[0]}: run the stage to completion")
    frames, stats = [], []
    for table in tables:
        record, problem = chunk_record(table)
        if problem is None:
            frame = pd.read_csv(table, dtype={"function": str})
            if len(frame) != record["rows"]:
                problem = f"it has {len(frame)} rows where {record['rows']} were written"
        if problem is not None:
            raise CorruptChunkError(f"{table}: {problem}; run the stage again to recompute it")
        frames.append(frame)
        stats.append({k: v for k, v in record.items() if k not in ("rows", "files")})
    return pd.concat(frames, ignore_index=True), pd.DataFrame(stats)
