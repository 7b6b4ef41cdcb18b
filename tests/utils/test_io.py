"""Atomic writes: the target holds either its old bytes or the complete new ones, never a mix,
and no temporary file is left behind either way."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import numpy as np
import pytest

from polymodal.utils.io import atomic_folder, atomic_path, atomic_write, atomic_write_json, durable_replace


def _leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def test_a_complete_write_replaces_the_target(tmp_path):
    target = tmp_path / "sub" / "model.bin"  # the folder is created
    atomic_write(target, lambda tmp: tmp.write_bytes(b"new"))
    assert target.read_bytes() == b"new"
    atomic_write_json(target, {"a": [1, 2]})
    assert json.loads(target.read_text()) == {"a": [1, 2]}
    assert _leftovers(target.parent) == []


def test_a_failed_write_keeps_the_old_target_and_removes_the_temp_file(tmp_path):
    target = tmp_path / "model.bin"
    target.write_bytes(b"old and complete")

    def half_write(tmp):
        tmp.write_bytes(b"ne")
        raise KeyboardInterrupt  # an interrupted run

    with pytest.raises(KeyboardInterrupt):
        atomic_write(target, half_write)
    assert target.read_bytes() == b"old and complete"
    assert _leftovers(tmp_path) == []


def test_a_failed_first_write_leaves_no_target(tmp_path):
    target = tmp_path / "metrics.json"
    with pytest.raises(TypeError, match="not JSON serialisable"):
        atomic_write_json(target, {"bad": object()})
    assert not target.exists() and _leftovers(tmp_path) == []


def test_the_temp_path_is_beside_the_target(tmp_path):
    """Same folder, so the final rename stays on one file system (atomic)."""
    with atomic_path(tmp_path / "x.csv") as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith(".x.csv.")
        tmp.write_text("a")
    assert (tmp_path / "x.csv").read_text() == "a"


def test_written_files_get_the_usual_permissions(tmp_path):
    """0666 less the umask, as any new file (a temp file's 0600 would make shared runs unreadable),
    also from a writer that makes its own file private (safetensors' save_file does)."""
    from safetensors.numpy import save_file

    old = os.umask(0o022)
    try:
        atomic_write(tmp_path / "model.bin", lambda tmp: tmp.write_bytes(b"x"))
        atomic_write(tmp_path / "state.safetensors", lambda tmp: save_file({"w": np.zeros(2)}, str(tmp)))
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "model.bin").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "state.safetensors").stat().st_mode) == 0o644


def test_json_files_are_strict_json_undefined_numbers_written_null(tmp_path):
    import numpy as np

    atomic_write_json(tmp_path / "m.json", {"ece": float("nan"), "nested": [np.float32("inf"), 1.5], "n": 3})
    text = (tmp_path / "m.json").read_text(encoding="utf-8")
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text) == {"ece": None, "nested": [None, 1.5], "n": 3}


def test_a_folder_appears_whole_and_replaces_the_old_one(tmp_path):
    target = tmp_path / "export"
    with atomic_folder(target) as staging:
        (staging / "a.txt").write_text("new")
        assert not target.exists() and staging.parent == tmp_path and staging.name.startswith(".tmp-")
    assert (target / "a.txt").read_text() == "new"
    with atomic_folder(target) as staging:
        (staging / "b.txt").write_text("newer")
    assert sorted(p.name for p in target.iterdir()) == ["b.txt"]  # the old folder's files went with it
    assert [p.name for p in tmp_path.iterdir()] == ["export"]  # no staging or old folder left


def test_a_failed_folder_write_keeps_the_old_folder(tmp_path):
    target = tmp_path / "export"
    target.mkdir()
    (target / "a.txt").write_text("old")
    with pytest.raises(RuntimeError), atomic_folder(target) as staging:
        (staging / "a.txt").write_text("half")
        raise RuntimeError("interrupted")
    assert (target / "a.txt").read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["export"]


def test_a_folder_another_writer_stored_first_is_kept_without_replace(tmp_path):
    target = tmp_path / "statistics"
    with atomic_folder(target, replace=False) as staging:
        (staging / "mean.json").write_text("mine")
        target.mkdir()
        (target / "mean.json").write_text("theirs")  # stored meanwhile by another process
    assert (target / "mean.json").read_text() == "theirs" and [p.name for p in tmp_path.iterdir()] == ["statistics"]


def test_a_durable_replace_moves_the_file(tmp_path):
    (tmp_path / "new.tmp").write_bytes(b"checkpoint")
    (tmp_path / "last.ckpt").write_bytes(b"old")
    durable_replace(tmp_path / "new.tmp", tmp_path / "last.ckpt")
    assert (tmp_path / "last.ckpt").read_bytes() == b"checkpoint" and not (tmp_path / "new.tmp").exists()


def test_a_folder_stored_by_another_writer_during_the_rename_is_kept_without_replace(tmp_path, monkeypatch):
    target = tmp_path / "statistics"
    real_replace = os.replace

    def racing(source, destination):  # the other process renames its folder into place first
        if Path(destination) == target and not target.exists():
            target.mkdir()
            (target / "mean.json").write_text("theirs")
        return real_replace(source, destination)

    monkeypatch.setattr(os, "replace", racing)
    with atomic_folder(target, replace=False) as staging:
        (staging / "mean.json").write_text("mine")
    assert (target / "mean.json").read_text() == "theirs" and [p.name for p in tmp_path.iterdir()] == ["statistics"]


def test_an_exclusive_lock_refuses_a_second_holder_until_released(tmp_path):
    import multiprocessing

    from polymodal.utils.io import exclusive_lock, lock_path

    target = tmp_path / "run"
    with exclusive_lock(target, lambda held: RuntimeError("busy")):
        assert lock_path(target).is_file()
        with pytest.raises(RuntimeError, match="busy"), exclusive_lock(target, lambda held: RuntimeError("busy")):
            pass
        context = multiprocessing.get_context("spawn")  # another process is refused too
        with context.Pool(1) as pool:
            assert pool.apply(_try_lock, (str(target),)) == "busy"
    assert not lock_path(target).exists()
    with exclusive_lock(target, lambda held: RuntimeError("busy")):  # free again
        pass


def _try_lock(target: str) -> str:
    from polymodal.utils.io import exclusive_lock

    try:
        with exclusive_lock(target, lambda held: RuntimeError("busy")):
            return "held"
    except RuntimeError as err:
        return str(err)


def test_a_lock_is_the_outputs_whatever_the_path_names_it_and_goes_inside_a_folder_in_a_read_only_parent(
        tmp_path, monkeypatch):
    """A symlink (or '.') to a locked run folder bypassed its lock; an output volume mounted in a
    read-only file system could not be locked at all."""
    from polymodal.utils import io
    from polymodal.utils.io import exclusive_lock, lock_path

    (tmp_path / "run").mkdir()
    (tmp_path / "alias").symlink_to(tmp_path / "run")
    assert lock_path(tmp_path / "alias") == lock_path(tmp_path / "run") == tmp_path / ".run.lock"
    monkeypatch.chdir(tmp_path / "run")
    assert lock_path(".") == tmp_path / ".run.lock"
    with exclusive_lock(tmp_path / "run", lambda held: RuntimeError(f"busy: {held}")):
        with pytest.raises(RuntimeError, match=r"busy: .*\.run\.lock"), exclusive_lock("../alias", lambda held:
                                                                                    RuntimeError(f"busy: {held}")):
            pass
    monkeypatch.setattr(io, "_writable", lambda folder: folder != tmp_path)  # tmp_path read-only
    assert lock_path(tmp_path / "run") == tmp_path / "run" / ".polymodal.lock"
    assert lock_path(tmp_path / "new") == tmp_path / ".new.lock"  # not made yet: nowhere else to put it


def test_a_folder_is_replaced_in_one_step_where_the_system_can_swap_two_paths(tmp_path, monkeypatch):
    """Two renames left no folder at the target when a process was killed between them."""
    from polymodal.utils.io import exchange_paths

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "x").write_text("a")
    if not exchange_paths(tmp_path / "a", tmp_path / "b"):
        pytest.skip("this system cannot exchange two paths in one step")
    assert (tmp_path / "b" / "x").read_text() == "a" and not (tmp_path / "a" / "x").exists()
    (tmp_path / "target").mkdir()
    (tmp_path / "target" / "old.txt").write_text("old")

    def no_rename(*args):
        raise AssertionError("replaced by renames, not in one step")

    monkeypatch.setattr(os, "replace", no_rename)
    with atomic_folder(tmp_path / "target") as staging:
        (staging / "new.txt").write_text("new")
    assert sorted(p.name for p in (tmp_path / "target").iterdir()) == ["new.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b", "target"]  # the old folder went


def test_where_two_paths_cannot_be_swapped_a_folder_is_replaced_by_two_renames(tmp_path, monkeypatch):
    """The only way on macOS and Windows: kept working where Linux swaps in one step."""
    from polymodal.utils import io

    monkeypatch.setattr(io, "exchange_paths", lambda first, second: False)
    (tmp_path / "target").mkdir()
    (tmp_path / "target" / "old.txt").write_text("old")
    with atomic_folder(tmp_path / "target") as staging:
        (staging / "new.txt").write_text("new")
    assert sorted(p.name for p in (tmp_path / "target").iterdir()) == ["new.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["target"]


def test_a_file_system_without_locks_is_warned_about_not_fatal(tmp_path, monkeypatch):
    import errno
    import fcntl

    from polymodal.utils.io import exclusive_lock, lock_path

    def no_locks(fd, operation):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_locks)
    with pytest.warns(UserWarning, match="takes no locks"), exclusive_lock(tmp_path / "run", lambda held: None):
        pass
    assert not lock_path(tmp_path / "run").exists()


def test_a_lock_file_of_a_shared_cache_is_made_for_the_group_and_locks_when_only_readable(tmp_path, monkeypatch):
    """A cache a group shares: the lock file takes the permissions the umask leaves (group-writable
    under umask 002), and a member who may only read another's lock file still takes the lock
    (a PermissionError crashed the run)."""
    import os
    import stat

    from polymodal.utils import io as io_module
    from polymodal.utils.io import exclusive_lock, lock_path

    target = tmp_path / "store"
    before = os.umask(0o002)
    try:
        with exclusive_lock(target, lambda held: RuntimeError("busy")):
            assert stat.S_IMODE(lock_path(target).stat().st_mode) == 0o664
            real = os.open

            def not_writable(path, flags, *args):  # as another user's 0644 lock file is to this one
                if str(path) == str(lock_path(target)) and flags & os.O_RDWR:
                    raise PermissionError(13, "Permission denied", str(path))
                return real(path, flags, *args)

            monkeypatch.setattr(io_module.os, "open", not_writable)
            with pytest.raises(RuntimeError, match="busy"), exclusive_lock(target, lambda held: RuntimeError("busy")):
                pass  # the first holder's lock is seen through the read-only descriptor
    finally:
        os.umask(before)
        monkeypatch.undo()
    assert not lock_path(target).exists()  # the holder removed it on release


@pytest.mark.skipif(not hasattr(os, "O_NOFOLLOW"), reason="no O_NOFOLLOW on this platform")
def test_a_lock_file_that_is_a_symbolic_link_is_refused_not_followed(tmp_path):
    """A shared cache folder: another user who may write it put a link where a lock file goes,
    pointing at a file of this user's; opening it with O_CREAT made (or locked) that file."""
    from polymodal.utils.io import exclusive_lock, lock_path

    target, victim = tmp_path / "store", tmp_path / "home" / "victim.txt"
    victim.parent.mkdir()
    lock_path(target).symlink_to(victim)
    for busy in (lambda held: RuntimeError("busy"), None):  # refused at once, or waited for
        with pytest.raises(PermissionError) as refused, exclusive_lock(target, busy):
            pass
        assert str(refused.value).startswith(f"[Errno {refused.value.errno}] the lock file is a symbolic link, which "
                                             "polymodal does not follow")
        assert refused.value.filename == str(lock_path(target))
        assert not victim.exists() and lock_path(target).is_symlink()  # nothing made through it, the link left


def test_a_lock_file_that_is_a_pipe_is_refused_at_once_not_waited_on(tmp_path):
    """A FIFO planted where a lock file goes blocked the open until a writer came: the process hung."""
    import os
    import threading

    from polymodal.utils.io import exclusive_lock, lock_path

    target = tmp_path / "store"
    os.mkfifo(lock_path(target))
    outcome = []

    def lock() -> None:
        try:
            with exclusive_lock(target, lambda held: RuntimeError("busy")):
                outcome.append("locked")
        except PermissionError as err:
            outcome.append(err)

    worker = threading.Thread(target=lock, daemon=True)
    worker.start()
    worker.join(10)
    if worker.is_alive():  # unblock the open, so that the test ends
        os.close(os.open(lock_path(target), os.O_WRONLY | os.O_NONBLOCK))
        worker.join(5)
    assert len(outcome) == 1 and isinstance(outcome[0], PermissionError), outcome
    assert "the lock file is not a regular file" in str(outcome[0])
