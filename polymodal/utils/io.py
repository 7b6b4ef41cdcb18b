"""Atomic file writes: a temp file in the same folder, flushed, then renamed over the target.

An interrupted run therefore never leaves a half-written model, checkpoint or table behind.
Also what writing and reading files needs beside that: checking an output path before work
starts (:func:`check_table_path`, :func:`check_folder_path`: ``OptionError`` naming the option),
JSON-able values (:func:`python_scalar`), a zip archive's integrity (:func:`damaged_zip`, for
checkpoints) and content digests of files and folders (:func:`folder_digest`).
"""

from __future__ import annotations

import errno
import json
import os
import secrets
import shutil
import stat
import zipfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np


@contextmanager
def atomic_path(target: Path) -> Iterator[Path]:
    """Yield a temporary path next to ``target``; on success it replaces ``target`` atomically."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp_path = _new_temp_file(target)
    mode = stat.S_IMODE(tmp_path.stat().st_mode)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as handle:
            os.fsync(handle.fileno())
            if stat.S_IMODE(os.fstat(handle.fileno()).st_mode) != mode:  # a writer that recreated it 0600
                os.fchmod(handle.fileno(), mode)  # (safetensors' save_file does)
        os.replace(tmp_path, target)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def _new_temp_file(target: Path) -> Path:
    """An empty, new file beside ``target``, created with the mode of any new file (0666 less the
    umask; ``tempfile.mkstemp`` would make it 0600, and the rename keeps it: a served or shared
    run would be unreadable to other users)."""
    while True:
        path = target.parent / f".{target.name}.{secrets.token_hex(4)}.tmp"
        try:
            os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
            return path
        except FileExistsError:  # another writer's name: draw again
            continue


def durable_replace(source: Path, target: Path) -> None:
    """Flush ``source`` (a file another writer produced) to disk, then rename it onto ``target``:
    after a crash ``target`` is the old file or the whole new one."""
    with open(source, "rb+") as handle:
        os.fsync(handle.fileno())
    os.replace(source, target)


def exchange_paths(first: Path, second: Path) -> bool:
    """Swap two existing paths in one step (Linux ``renameat2`` with ``RENAME_EXCHANGE``): readers
    see one or the other, and a process killed meanwhile leaves both. False where the system or
    the file system cannot (the caller then renames twice)."""
    import ctypes
    import sys

    if not sys.platform.startswith("linux"):
        return False
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):  # a C library without it (glibc < 2.28, musl before 1.2.4)
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    at_cwd, rename_exchange = -100, 2
    if renameat2(at_cwd, os.fsencode(first), at_cwd, os.fsencode(second), rename_exchange) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.EXDEV):
        return False
    raise OSError(code, os.strerror(code), str(second))


@contextmanager
def atomic_folder(target: Path, *, replace: bool = True) -> Iterator[Path]:
    """Yield a new, empty, hidden folder beside ``target``; when the block succeeds it becomes
    ``target`` in one rename, so readers see the whole folder or none.

    An existing ``target`` is replaced (``replace``) or kept (another writer stored it first: the
    new folder is dropped). The replacement swaps the two folders in one step where the system can
    (:func:`exchange_paths`), else renames the old one aside first (put back if the second rename
    fails; a process killed between the two leaves it at ``.tmp-*-old-*``). On error the staging folder is removed.
    Staging folders are named ``.tmp-*`` (what :func:`polymodal.data.cache.sweep_leftovers` clears
    after a killed process).
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.with_name(f".tmp-{secrets.token_hex(8)}-{target.name}")
    staging.mkdir()  # not mkdtemp: the folder keeps the usual permissions
    try:
        yield staging
        if replace and target.is_dir() and not target.is_symlink() and exchange_paths(staging, target):
            pass  # swapped in one step: the old folder is now the staging one, removed below
        elif replace and target.exists():  # two renames: a kill between them leaves the old one at .tmp-*-old-*
            old = target.with_name(f".tmp-{secrets.token_hex(8)}-old-{target.name}")
            os.replace(target, old)
            try:
                os.replace(staging, target)
            except OSError:
                os.replace(old, target)
                raise
            shutil.rmtree(old, ignore_errors=True)
        elif not target.exists():
            try:
                os.replace(staging, target)
            except OSError:  # another writer stored it between the check and the rename
                if replace or not target.is_dir():
                    raise
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def lock_path(target: str | os.PathLike) -> Path:
    """The lock file of an output ``target`` (a run folder, a predictions table): hidden beside
    the path it resolves to (an alias, a symlink or ``.``, locks the same output); inside
    ``target`` when it is a folder whose parent cannot be written (an output volume mounted in a
    read-only file system). Every process finds the same file for the same output."""
    target = Path(target).resolve()
    beside = target.parent / f".{target.name}.lock"
    if target.is_dir() and not _writable(target.parent):
        return target / ".polymodal.lock"
    return beside


def _probe_write(folder: Path) -> None:
    """Make and remove a file in ``folder``; the OSError when that cannot be done."""
    os.unlink(_new_temp_file(folder / "write-check"))


def _writable(folder: Path) -> bool:
    try:
        _probe_write(folder)
    except OSError:
        return False
    return True


NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)  # open a path's last part itself, never what a symlink there names (POSIX)
# a FIFO planted at a lock's path would block the open until a writer came: opened at once, then refused
NONBLOCK = getattr(os, "O_NONBLOCK", 0)


def _open_lock_file(path: Path) -> int:
    """A descriptor of the lock file ``path``, created if need be with the permissions the umask
    leaves (a cache a group shares: each member's process opens the others' lock files); one
    another user made and this one may not write is opened for reading, which ``flock`` locks
    all the same. A symbolic link at ``path`` is refused, not followed: whoever may write the
    folder could point it at any file of this user's, which would be created there (``O_CREAT``);
    and so is anything but a file there (a FIFO would block the open, and the process with it).

    Raises:
        PermissionError: ``path`` is a symbolic link or not a file, or its folder may not be written.
    """
    try:
        for _ in range(3):  # a holder may remove it between the two opens: make it again
            try:
                return _regular(os.open(path, os.O_RDWR | os.O_CREAT | NOFOLLOW | NONBLOCK, 0o666), path)
            except PermissionError as err:
                denied = err
                try:
                    return _regular(os.open(path, os.O_RDONLY | NOFOLLOW | NONBLOCK), path)
                except FileNotFoundError:
                    continue
        raise denied  # a folder this process may not write: no lock file to make
    except OSError as err:  # ELOOP on Linux, EMLINK on FreeBSD: told by the path itself
        if NOFOLLOW and path.is_symlink():
            raise PermissionError(err.errno, "the lock file is a symbolic link, which polymodal does not follow (whoever "
                                  "may write its folder could point it at any file of yours); remove it if you made "
                                  "it, else ask who did", str(path)) from None
        raise


def _regular(fd: int, path: Path) -> int:
    """``fd``, the lock file ``path`` opened, if it is a regular file; else closed and refused."""
    if stat.S_ISREG(os.fstat(fd).st_mode):
        return fd
    os.close(fd)
    raise PermissionError(errno.EACCES, "the lock file is not a regular file (a pipe, a device...), which polymodal "
                          "does not lock: remove it if you made it, else ask who did", str(path))


@contextmanager
def exclusive_lock(target: str | os.PathLike, busy: Callable[[Path], Exception] | None,
                   waiting: Callable[[Path], None] | None = None) -> Iterator[None]:
    """Hold an exclusive advisory lock on the output ``target`` for the block, so that two
    processes never write it at once; raise ``busy(lock file)`` at once when another process
    holds it, or, with ``busy`` None, call ``waiting(lock file)`` and wait for it. The lock file
    (:func:`lock_path`) goes when the block ends; one left by a killed process holds no lock (the
    system releases a dead process's locks). Where the platform has no ``fcntl`` (Windows)
    nothing is locked."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    path = lock_path(target)
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        fd = _open_lock_file(path)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if busy is not None:
                os.close(fd)
                raise busy(path) from None
            if waiting is not None:
                waiting(path)
                waiting = None  # said once
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
            except BaseException:
                os.close(fd)
                raise
        except OSError as err:  # a file system without locks (Lustre mounted noflock, some FUSE or CIFS mounts)
            os.close(fd)
            path.unlink(missing_ok=True)
            if err.errno not in (errno.ENOSYS, errno.ENOLCK, errno.EOPNOTSUPP, errno.EINVAL):
                raise
            from polymodal.utils.warn import warn_user

            warn_user(f"{target}: its file system takes no locks ({err.strerror}); nothing stops another process "
                      "from writing the same output meanwhile")
            yield
            return
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino  # not a file its holder removed meanwhile
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        yield
    finally:
        path.unlink(missing_ok=True)  # while held: a process that opened it before finds it gone, and retries
        os.close(fd)


def atomic_write(target: Path, write: Callable[[Path], Any]) -> None:
    """Call ``write(tmp_path)`` and move the result onto ``target`` atomically."""
    with atomic_path(target) as tmp:
        write(tmp)


def atomic_write_text(target: Path, text: str) -> None:
    with atomic_path(target) as tmp:
        tmp.write_text(text, encoding="utf-8")


def atomic_write_json(target: Path, data: Any) -> None:
    """``data`` as strict JSON: a NaN or infinite number (an undefined metric, a diverged loss) is
    written ``null``, as JSON has no such numbers (``NaN`` breaks strict parsers)."""
    atomic_write_text(target, json.dumps(finite_json(data), indent=2, sort_keys=False, default=_json_default,
                                         allow_nan=False) + "\n")


TABLE_SUFFIXES = (".csv", ".parquet")  # what write_table writes


def check_table_path(path: str | os.PathLike, what: str = "--out") -> Path:
    """``path`` as a :class:`Path` when :func:`write_table` can write it: a ``.csv`` or ``.parquet``
    name that is not a folder, in a folder that neither is nor lies in a file (see
    :func:`check_folder_path`). Checked before any work is done.

    Raises:
        OptionError: naming ``what`` (the option or argument that gave the path).
    """
    from polymodal.errors import OptionError

    path = Path(path)
    if path.suffix.lower() not in TABLE_SUFFIXES:
        raise OptionError([f"{what}: tables are written as {' or '.join(TABLE_SUFFIXES)}; got '{path.name}'"])
    if path.is_dir():
        raise OptionError([f"{what}: {path} is a folder; name a {' or '.join(TABLE_SUFFIXES)} file"])
    check_folder_path(path.parent, what)
    return path


def check_table_out(path: str | os.PathLike, *, overwrite: bool = False, inputs: Mapping[str, Any] | None = None,
                    what: str | None = None) -> Path:
    """``path`` as :func:`check_table_path` checks it, and free to be written: refused, whatever
    ``overwrite``, when it is one of the files the work reads (``inputs`` maps how a message names
    each, ``the --data manifest``, to it; an input that is no path, a DataFrame, is passed over);
    refused when it exists, unless ``overwrite``. Checked before any work is done.

    Args:
        what: how messages name the option that gave ``path`` (default :func:`~polymodal.errors.option`
            of ``--out``); ``--overwrite`` is named as :func:`~polymodal.errors.option` spells it.

    Raises:
        OptionError: naming the file and the option (see :func:`check_table_path`).
    """
    from polymodal.errors import OptionError, option

    what = option("--out") if what is None else what
    path = check_table_path(path, what)
    if not path.exists():
        return path
    for role, source in (inputs or {}).items():
        if isinstance(source, str | os.PathLike) and path.resolve() == Path(source).resolve():
            raise OptionError([f"{path} ({what}) is {role}; write to another file ({option('--overwrite')} does "
                               "not apply: it would replace the input while it is read)"])
    if not overwrite:
        raise OptionError([f"{path} ({what}) already exists; give {option('--overwrite')} to replace it, or another "
                           f"{what}"])
    return path


def check_folder_path(folder: str | os.PathLike, what: str = "--out", *, writable: bool = False) -> Path:
    """``folder`` as a :class:`Path` when it is, or can be made, a folder: neither it nor a folder
    above it is a file. With ``writable``, files must also be creatable in it, or in the nearest
    folder above it that exists (where it would be made); a probe file is made there and removed.
    Nothing else is created. Checked before any work is done.

    Raises:
        OptionError: naming ``what`` (the option or argument that gave the path) and the file in
            the way, or the folder that cannot be written and why.
    """
    from polymodal.errors import OptionError

    folder = Path(folder)
    existing = folder  # the nearest of folder and the folders above it that exists
    try:
        for existing in (folder, *folder.parents):
            if existing.exists():
                break
        if not existing.is_dir():
            raise OptionError([f"{what}: {existing} is a file, not a folder"])
        if writable:
            _probe_write(existing)
    except OSError as err:  # no permission, a read-only or virtual file system (/proc)
        raise OptionError([f"{what}: the folder {existing} cannot be written ({err.strerror or err})"]) from err
    return folder


def write_table(frame: Any, path: str | os.PathLike, *, what: str = "--out", float_format: str | None = None) -> Path:
    """Write a DataFrame (its index dropped) atomically as CSV or Parquet, chosen by the suffix."""
    path = check_table_path(path, what)
    if path.suffix.lower() == ".parquet":
        atomic_write(path, lambda tmp: frame.to_parquet(tmp, index=False))
    else:
        atomic_write(path, lambda tmp: frame.to_csv(tmp, index=False, float_format=float_format))
    return path


def finite_json(data: Any) -> Any:
    """``data`` with every non-finite float (numpy's too) replaced by None, nested dicts and lists
    included."""
    if isinstance(data, dict):
        return {key: finite_json(value) for key, value in data.items()}
    if isinstance(data, list | tuple):
        return [finite_json(value) for value in data]
    if isinstance(data, float | np.floating) and not np.isfinite(data):
        return None
    return data


def python_scalar(value: Any) -> Any:
    """A numpy scalar as the Python value it holds (JSON-able, and shown as Python shows it);
    anything else as it is."""
    return value.item() if isinstance(value, np.generic) else value


def _json_default(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serialisable")


def damaged_zip(path: Path) -> str | None:
    """Why the zip archive ``path`` (a PyTorch or Lightning checkpoint) is damaged, or None when
    every member passes its CRC check."""
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError) as err:
        return str(err)
    return None if bad is None else f"{bad} fails its CRC check"


# the files of a model folder that are weights; the others (configs, tokenizer, vocabularies) are what a
# run copies of a pretrained folder (models.weights.small_files) and what keys its tokenizer
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".h5", ".msgpack", ".onnx", ".ot", ".tflite")


def model_files_digest(folder: str | os.PathLike) -> str:
    """A hash of the files directly in a model folder that a run copies of it: neither weights nor
    hidden files (``.gitattributes``), so the folder and the run's copy of it hash alike."""
    import hashlib

    if not os.path.isdir(folder):
        return ""
    digest = hashlib.blake2b(digest_size=16)
    entries = (e for e in os.scandir(folder) if e.is_file() and not e.name.startswith(".")
               and not e.name.lower().endswith(WEIGHT_SUFFIXES))
    for entry in sorted(entries, key=lambda e: e.name):
        digest.update(entry.name.encode("utf-8", "surrogateescape") + b"\0")
        hash_file(digest, entry.path)
    return digest.hexdigest()


def folder_digest(folder: str | os.PathLike, skip_suffixes: tuple[str, ...] = ()) -> str:
    """A hash of the files directly in ``folder`` (names and bytes, in name order), leaving out
    those ending in ``skip_suffixes``; "" when it is not a folder. Keys caches on the content of
    a local model or tokenizer folder."""
    import hashlib

    if not os.path.isdir(folder):
        return ""
    digest = hashlib.blake2b(digest_size=16)
    hash_folder(digest, folder, skip_suffixes)
    return digest.hexdigest()


def hash_folder(digest: Any, folder: str | os.PathLike, skip_suffixes: tuple[str, ...] = ()) -> None:
    """Feed ``digest`` each file directly in ``folder`` (but those ending in ``skip_suffixes``):
    its name, a NUL, its bytes, in name order."""
    entries = (e for e in os.scandir(folder) if e.is_file() and not e.name.endswith(skip_suffixes))
    for entry in sorted(entries, key=lambda e: e.name):
        digest.update(entry.name.encode("utf-8", "surrogateescape") + b"\0")
        hash_file(digest, entry.path)


def hash_file(digest: Any, path: str | os.PathLike) -> None:
    """Feed ``digest`` a file's bytes, a megabyte at a time."""
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
