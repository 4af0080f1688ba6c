"""Publishing a run directory: owner-only restricted data, one writer at a time, an atomic swap.

- **Owner-only.** Whatever the umask, the identifiable side is readable by its owner
  alone: a run writes with umask 077 (``private_umask``), so its staging folder and
  everything in it are 0700 / 0600 while it is written, and ``finalise_modes`` then
  gives ``restricted/`` (and ``work/``, kept by --keep-work) 0700 / 0600 and the rest (``analyst/``, the manifest, the
  report) the modes the user's umask would give.
- **One writer.** ``lock_run_dir`` takes an exclusive ``flock`` on ``.NAME.lock`` beside
  the run directory; a second run (or ``evaluate``/``review``) into the same folder is
  told the folder is busy. The kernel drops the lock when the process dies, however it
  dies.
- **A whole run at --out, always.** The run is written to ``.NAME.staging-PID`` beside
  the run directory and swapped in with one ``renameat2(RENAME_EXCHANGE)`` (Linux): a
  reader finds the old run or the new one, never neither. Where the file system cannot
  exchange, two renames are used, the old run parked at ``.NAME.retired-PID`` between
  them; a kill there leaves --out missing, and ``recover`` (run under the lock by the
  next run, ``evaluate`` or ``review``) puts the parked run back. Leftovers of dead
  processes are deleted: they hold restricted data.
- **Never delete people's work.** ``carry_over`` brings into the new run whatever the old
  run holds that the new run did not produce (review files, decisions, notes): at the same
  path, except ``evaluate``'s outputs, which score the old run's people and so go to
  ``previous/evaluation.json`` and ``restricted/previous/error_examples.parquet``. Files are hard-linked where possible, so carrying costs
  no copy and the old run stays whole until the swap.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import json
import os
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

from linkage.errors import InputError, LinkageError

MANIFEST = "manifest.json"
RESTRICTED = "restricted"
# Folders wholly the run's own product: an old run's copies never carry over.
RUN_OWNED_DIRS = ("analyst", "work")
# `linkage evaluate`'s outputs score the old run's people: kept, but moved aside
# (relative path -> where), the restricted one inside restricted/.
MOVED_ASIDE = {
    "evaluation.json": "previous/evaluation.json",
    "restricted/error_examples.parquet": "restricted/previous/error_examples.parquet",
}
PRIVATE_DIR, PRIVATE_FILE = 0o700, 0o600
# Owner-only folders of a run: the identifiable side, and the work database --keep-work keeps.
PRIVATE_DIRS = (RESTRICTED, "work")


class RunBusyError(LinkageError):
    """Another linkage process holds the run directory's lock."""


# --- owner-only files -----------------------------------------------------------------------------


@contextmanager
def private_umask() -> Iterator[int]:
    """Create files 0600 and folders 0700 inside the block; yields the umask it replaced."""
    old = os.umask(0o077)
    try:
        yield old
    finally:
        os.umask(old)


def current_umask() -> int:
    old = os.umask(0o077)
    os.umask(old)
    return old


def restrict_tree(path: Path) -> None:
    """``path`` and everything under it owner-only: folders 0700, files 0600 (symlinks untouched)."""
    path = Path(path)
    if path.is_symlink() or not path.exists():
        return
    if not path.is_dir():
        os.chmod(path, PRIVATE_FILE)
        return
    os.chmod(path, PRIVATE_DIR)
    for root, dirs, files in os.walk(path):
        for d in dirs:
            p = os.path.join(root, d)
            if not os.path.islink(p):
                os.chmod(p, PRIVATE_DIR)
        for f in files:
            p = os.path.join(root, f)
            if not os.path.islink(p):
                os.chmod(p, PRIVATE_FILE)


def make_private_dir(path: Path) -> Path:
    """Create ``path`` (and missing parents) owner-only; an existing folder is made owner-only too."""
    path = Path(path)
    with private_umask():
        path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, PRIVATE_DIR)
    return path


def finalise_modes(run: Path, umask: int) -> None:
    """``restricted/`` (and a kept ``work/``) owner-only; the rest as the user's ``umask`` would make it."""
    run = Path(run)
    dir_mode, file_mode = 0o777 & ~umask, 0o666 & ~umask
    os.chmod(run, dir_mode)
    for entry in run.iterdir():
        if entry.is_symlink():
            continue
        if entry.name in PRIVATE_DIRS:
            restrict_tree(entry)
        elif entry.is_dir():
            os.chmod(entry, dir_mode)
            for root, dirs, files in os.walk(entry):
                for d in dirs:
                    os.chmod(os.path.join(root, d), dir_mode)
                for f in files:
                    os.chmod(os.path.join(root, f), file_mode)
        else:
            os.chmod(entry, file_mode)


# --- what is a run --------------------------------------------------------------------------------


def read_run_manifest(run_dir: Path) -> dict[str, Any]:
    """The manifest of a finished ``linkage run``; an InputError saying what the folder is otherwise."""
    run_dir = Path(run_dir)
    path = run_dir / MANIFEST
    if not run_dir.is_dir():
        raise InputError(f"{run_dir}: no such run directory. Give the --out folder of a finished `linkage run`.")
    if not path.is_file():
        raise InputError(
            f"{run_dir}: not a linkage run directory (no {MANIFEST}). Give the --out folder of a finished `linkage run`."
        )
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError):
        raise InputError(f"{path}: not a linkage run manifest (not valid JSON).") from None
    if _is_run_manifest(manifest):
        return manifest
    if isinstance(manifest, dict) and {"people", "profile", "seed"} <= set(manifest):
        raise InputError(
            f"{run_dir}: this is a folder of synthetic extracts written by `linkage synth`, not a run directory. "
            f"Run the job on it first (linkage run CONFIG --data {run_dir} --out RUN_DIR) and give RUN_DIR."
        )
    raise InputError(
        f"{path}: not the manifest of a `linkage run` (it lacks config_sha256, inputs or model). "
        f"Give the --out folder of a finished `linkage run`."
    )


def _is_run_manifest(manifest: Any) -> bool:
    return (
        isinstance(manifest, dict)
        and isinstance(manifest.get("config_sha256"), str)
        and isinstance(manifest.get("inputs"), dict)
        and isinstance(manifest.get("model"), dict)
        and "threshold_match_probability" in manifest["model"]
    )


def is_run_dir(path: Path) -> bool:
    try:
        read_run_manifest(path)
    except InputError:
        return False
    return True


def check_out_dir(run_dir: Path) -> None:
    """--out must be new, an empty folder, or an earlier run: never someone's other folder."""
    run_dir = Path(run_dir)
    if run_dir.is_symlink() or (run_dir.exists() and not run_dir.is_dir()):
        raise InputError(f"--out {run_dir}: exists and is not a folder. Give a new folder or an earlier run's.")
    if run_dir.is_dir() and any(run_dir.iterdir()) and not is_run_dir(run_dir):
        raise InputError(
            f"--out {run_dir}: the folder holds files and is not a linkage run directory; a run would replace it. "
            f"Give a new or empty folder, or an earlier run's --out."
        )


# --- the lock -------------------------------------------------------------------------------------


def lock_path(run_dir: Path) -> Path:
    run_dir = Path(run_dir)
    return run_dir.parent / f".{run_dir.name}.lock"


@contextmanager
def lock_run_dir(run_dir: Path) -> Iterator[None]:
    """Hold ``.NAME.lock`` beside ``run_dir`` exclusively, or raise RunBusyError at once.

    The lock file stays (removing it would race with the next taker); it holds the pid.
    """
    path = lock_path(run_dir)
    with private_umask():
        fd = os.open(path, os.O_RDWR | os.O_CREAT, PRIVATE_FILE)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
            who = f" (process {holder})" if holder.isdigit() else ""
            raise RunBusyError(
                f"{run_dir}: busy, another linkage command{who} is writing this run directory. "
                f"Wait for it to finish, or give another --out."
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


# --- staging, leftovers and recovery --------------------------------------------------------------


def staging_dir(run_dir: Path) -> Path:
    run_dir = Path(run_dir)
    return run_dir.parent / f".{run_dir.name}.staging-{os.getpid()}"


def retired_dir(run_dir: Path) -> Path:
    run_dir = Path(run_dir)
    return run_dir.parent / f".{run_dir.name}.retired-{os.getpid()}"


def _leftovers(run_dir: Path, kind: str) -> list[Path]:
    """``.NAME.<kind>-PID`` folders whose process is gone."""
    run_dir = Path(run_dir)
    out = []
    for p in run_dir.parent.glob(f".{run_dir.name}.{kind}-*"):
        import psutil  # here, when there are leftovers: a find opens a run without it

        pid = p.name.rsplit("-", 1)[-1]
        if pid.isdigit() and int(pid) != os.getpid() and psutil.pid_exists(int(pid)):
            continue
        out.append(p)
    return out


@contextmanager
def open_run(run_dir: Path, say: Callable[[str], object]) -> Iterator[None]:
    """A finished run, held against concurrent writers, repaired if a publish was killed
    (each repair told through ``say``); what the caller writes into restricted/ is made
    owner-only on the way out."""
    run_dir = Path(run_dir)
    if run_dir.exists() or not run_dir.parent.is_dir():
        read_run_manifest(run_dir)  # not a run: say so before taking any lock
    with lock_run_dir(run_dir):
        for line in recover(run_dir):
            say(line)
        read_run_manifest(run_dir)
        try:
            yield
        finally:
            restrict_tree(run_dir / RESTRICTED)


def recover(run_dir: Path) -> list[str]:
    """Repair what a killed publish left; call with the lock held. Returns what was done, one line each.

    If --out is missing and a parked previous run exists, the newest parked run goes back
    to --out. Then dead processes' staging and parked folders are deleted.
    """
    run_dir = Path(run_dir)
    notes = []
    retired = sorted(_leftovers(run_dir, "retired"), key=lambda p: p.stat().st_mtime, reverse=True)
    if not run_dir.exists():
        for candidate in retired:
            if is_run_dir(candidate):
                os.replace(candidate, run_dir)
                retired.remove(candidate)
                notes.append(f"restored the previous run to {run_dir} from {candidate.name} (a publish was interrupted)")
                break
    for old in [*retired, *_leftovers(run_dir, "staging")]:
        remove_leftover(old)
        notes.append(f"removed {old.name}, left by an interrupted run")
    return notes


def remove_leftover(path: Path) -> None:
    """Delete a leftover; first make it owner-only, as it may hold restricted data."""
    try:
        os.chmod(path, PRIVATE_DIR)
    except OSError:
        pass
    shutil.rmtree(path, ignore_errors=True)


# --- carrying people's work across ----------------------------------------------------------------


def _link_or_copy(src: str, dst: str) -> str:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)
    return dst


def carry_over(old_run: Path, staging: Path) -> list[str]:
    """Bring into ``staging`` what ``old_run`` holds that the new run did not produce.

    Returns the carried paths, relative to the run directory, as they are in the new run.
    """
    old_run, staging = Path(old_run), Path(staging)
    if not old_run.is_dir():
        return []
    carried: list[str] = []

    def walk(rel: Path) -> None:
        for entry in sorted((old_run / rel).iterdir()):
            r = rel / entry.name
            if not rel.parts and entry.name in RUN_OWNED_DIRS:
                continue
            target_rel = Path(MOVED_ASIDE.get(r.as_posix(), r.as_posix()))
            target = staging / target_rel
            if entry.is_dir() and not entry.is_symlink():
                if target.is_dir():
                    walk(r)
                elif not target.exists():
                    target.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copytree(entry, target, symlinks=True, copy_function=_link_or_copy)
                    carried.append(target_rel.as_posix() + "/")
            elif not target.exists() and not target.is_symlink():
                target.parent.mkdir(parents=True, exist_ok=True)
                if entry.is_symlink():
                    os.symlink(os.readlink(entry), target)
                else:
                    _link_or_copy(str(entry), str(target))
                carried.append(target_rel.as_posix())

    walk(Path())
    return carried


# --- the swap -------------------------------------------------------------------------------------

_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _exchange(a: Path, b: Path) -> None:
    """Swap two paths atomically (Linux renameat2 RENAME_EXCHANGE); OSError where unsupported."""
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        raise OSError(errno.ENOSYS, "renameat2 is not available") from None
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e), str(a), None, str(b))


# Errors that mean "this file system cannot exchange": fall back to two renames.
_NO_EXCHANGE = {errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV}


def publish(staging: Path, run_dir: Path) -> None:
    """Put the finished ``staging`` folder at ``run_dir``; the old run there is removed.

    Call with the lock held, after ``carry_over`` and ``finalise_modes``.
    """
    staging, run_dir = Path(staging), Path(run_dir)
    if not run_dir.exists():
        os.replace(staging, run_dir)
        return
    try:
        _exchange(staging, run_dir)
    except OSError as exc:
        if exc.errno not in _NO_EXCHANGE:
            raise
        _publish_by_two_renames(staging, run_dir)
        return
    # ``staging`` now holds the old run.
    remove_leftover(staging)


def _publish_by_two_renames(staging: Path, run_dir: Path) -> None:
    retired = retired_dir(run_dir)
    os.replace(run_dir, retired)
    # Between these two renames --out is missing: if we are killed here, ``recover`` puts
    # ``retired`` back; if the second rename fails (or Ctrl-C lands), we put it back now.
    try:
        os.chmod(retired, PRIVATE_DIR)
        os.replace(staging, run_dir)
    except BaseException:
        if not run_dir.exists():
            os.replace(retired, run_dir)
        raise
    remove_leftover(retired)


# --- CSVs a person opens --------------------------------------------------------------------------

# A spreadsheet runs a cell that starts with one of these as a formula (OWASP "CSV injection").
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_safe(text: str | None) -> str | None:
    """``text`` as a spreadsheet shows it but never runs it: a leading single quote before a
    formula character. Other text, and None, unchanged.

    >>> csv_safe("=1+1"), csv_safe("SMITH"), csv_safe(None)
    ("'=1+1", 'SMITH', None)
    """
    if text and text.startswith(FORMULA_STARTS):
        return "'" + text
    return text


def csv_unsafe(text: str) -> str:
    """The inverse of ``csv_safe`` on a cell read back (a quote before a formula character dropped)."""
    if text.startswith("'") and text[1:].startswith(FORMULA_STARTS):
        return text[1:]
    return text


def csv_safe_sql(expr: str) -> str:
    """``csv_safe`` as a DuckDB expression over a VARCHAR ``expr``."""
    chars = "".join(FORMULA_STARTS).replace("'", "''")
    return f"CASE WHEN contains({_sql_text(chars)}, left({expr}, 1)) AND {expr} <> '' THEN '''' || {expr} ELSE {expr} END"


def _sql_text(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"
