"""Content keys and the stat memo: a warm pass stats files instead of reading them, and any change
of a file's content, size or times is hashed again."""

import os
import shutil
import time

import numpy as np
import pandas as pd
import pytest

from polymodal.data import content_keys as keys_module
from polymodal.data.cache import STALE_TEMP_S, FeatureStore, SortedIndex
from polymodal.data.content_keys import KEY_BYTES, StatMemo, content_key, content_keys, same_rows
from polymodal.data.manifest import read_manifest
from polymodal.data.modalities.base import ArraySpec
from polymodal.errors import DecodeError


def _hashes(values, file_based=True):
    """Plain content hashes, as stored (numpy fixed-width bytes)."""
    return np.array([content_key(v, file_based) for v in values], f"S{KEY_BYTES}")


def _keys(values, cache_dir):
    """content_keys through the memo of ``cache_dir``, as one pass of an encoding run."""
    memo = StatMemo(cache_dir)
    out = content_keys(values, True, memo)
    memo.flush()
    return out


SETTLE_S = 0.2


@pytest.fixture(autouse=True)
def short_settle(monkeypatch):
    """Files count as settled SETTLE_S after their last change (mtime or ctime), not 2 s."""
    monkeypatch.setattr(StatMemo, "SETTLE_NS", int(SETTLE_S * 1e9))


def settle():
    time.sleep(SETTLE_S + 0.05)


def _write(path, data: bytes):
    path.write_bytes(data)
    return str(path)


def _no_reads(monkeypatch):
    def refuse(value, file_based):
        raise AssertionError(f"{value} was read although its identity is remembered")

    real_rows = keys_module._shard_row_keys

    def refuse_rows(values, refs, positions, stats):
        assert not positions, f"{[values[p] for p in positions]} were read although their identities are remembered"
        return real_rows(values, refs, positions, stats)

    monkeypatch.setattr(keys_module, "content_key", refuse)
    monkeypatch.setattr(keys_module, "_shard_row_keys", refuse_rows)


def test_keys_equal_plain_content_hashes_and_a_warm_pass_reads_nothing(tmp_path, monkeypatch):
    files = [_write(tmp_path / f"f{i}.bin", i.to_bytes(2, "little") * 25) for i in range(300)]  # several thread chunks
    settle()
    cold, errors = _keys(files, tmp_path / "cache")
    assert not errors
    np.testing.assert_array_equal(cold, _hashes(files))
    _no_reads(monkeypatch)
    warm, errors = _keys(files, tmp_path / "cache")  # a new process, same folder
    assert not errors
    np.testing.assert_array_equal(warm, cold)


def test_an_edited_file_is_hashed_again(tmp_path):
    path = tmp_path / "a.bin"
    first = _write(path, b"x" * 10)
    settle()
    before, _ = _keys([first], tmp_path / "cache")
    _write(path, b"y" * 10)  # same size, other content
    settle()
    after, _ = _keys([first], tmp_path / "cache")
    assert after[0] == _hashes([first])[0] != before[0]


def test_an_edit_that_restores_size_and_mtime_is_caught_by_the_ctime(tmp_path):
    """Like ``touch -r`` after an edit (or an unpacker restoring times): same path, inode, size and
    mtime, but the change time moved, so the file is hashed again."""
    path = tmp_path / "a.bin"
    first = _write(path, b"x" * 10)
    past = time.time_ns() - 100 * 10**9
    os.utime(path, ns=(past, past))
    settle()
    before, _ = _keys([first], tmp_path / "cache")
    _write(path, b"y" * 10)
    os.utime(path, ns=(past, past))
    assert path.stat().st_mtime_ns == past
    settle()
    after, _ = _keys([first], tmp_path / "cache")
    assert after[0] == _hashes([first])[0] != before[0]


def test_a_frame_folder_is_keyed_by_its_frames_and_never_remembered_by_its_own_times(tmp_path):
    folder = tmp_path / "clip"
    folder.mkdir()
    for name in ("000.png", "001.png"):
        _write(folder / name, name.encode() * 4)
    settle()
    first, errors = _keys([str(folder)], tmp_path / "cache")
    assert not errors
    _write(folder / "001.png", b"x" * 28)  # edited in place, same size: the folder's times stay
    settle()
    edited, _ = _keys([str(folder)], tmp_path / "cache")
    assert edited[0] != first[0]
    os.rename(folder / "001.png", folder / "002.png")  # a renamed frame changes the order of frames
    renamed, _ = _keys([str(folder)], tmp_path / "cache")
    assert renamed[0] not in (first[0], edited[0])


def test_a_file_changed_within_the_clock_resolution_is_not_remembered(tmp_path, monkeypatch):
    settled = _write(tmp_path / "old.bin", b"def")
    settle()
    fresh = _write(tmp_path / "new.bin", b"abc")
    _keys([fresh, settled], tmp_path / "cache")
    reads = []
    monkeypatch.setattr(keys_module, "content_key", lambda value, file_based: reads.append(value) or b"k" * 16)
    _keys([fresh, settled], tmp_path / "cache")
    assert reads == [fresh]  # the settled file came from the memo, the fresh one was read again


def test_rows_of_a_packed_array_are_keyed_by_their_own_content(tmp_path, monkeypatch):
    shard = tmp_path / "shard.npy"
    np.save(shard, np.array([[1, 2], [3, 4], [1, 2]], np.int16))
    settle()
    cells = [f"{shard}#{i}" for i in range(3)]
    cold, _ = _keys(cells, tmp_path / "cache")
    assert cold[0] == cold[2] != cold[1]  # equal rows share a key
    _no_reads(monkeypatch)
    warm, _ = _keys(cells, tmp_path / "cache")
    np.testing.assert_array_equal(warm, cold)


@pytest.mark.parametrize("memo", [False, True])
def test_shard_rows_keyed_in_bulk_match_one_by_one_and_report_bad_rows(tmp_path, monkeypatch, memo):
    shard = tmp_path / "shard.npy"
    np.save(shard, np.arange(40, dtype=np.float32).reshape(10, 4))
    other = tmp_path / "other.npy"
    np.save(other, np.ones((2, 3), np.uint8))
    cells = [f"{shard}#{i}" for i in (3, 0, 9)] + [f"{other}#1", f"{shard}#10", f"{tmp_path / 'gone.npy'}#0"]
    memo = StatMemo(tmp_path / "cache") if memo else None
    stats = []
    real_stat = os.stat
    monkeypatch.setattr(keys_module.os, "stat", lambda path, *a, **k: stats.append(str(path)) or real_stat(path, *a, **k))
    keys, errors = content_keys(cells, True, memo)
    assert sorted(stats) == sorted([str(shard), str(other), str(tmp_path / "gone.npy")])  # one stat per shard
    monkeypatch.setattr(keys_module.os, "stat", real_stat)
    assert sorted(errors) == [4, 5]
    assert isinstance(errors[4], DecodeError) and "row 10 is outside the array, which has 10 rows" in str(errors[4])
    assert isinstance(errors[5], FileNotFoundError)
    np.testing.assert_array_equal(keys[:4], _hashes(cells[:4]))  # the one-row-at-a-time path


def test_unreadable_files_are_reported_by_position(tmp_path):
    good = _write(tmp_path / "good.bin", b"ok")
    inside_a_file = str(tmp_path / "good.bin" / "x")
    keys, errors = content_keys([str(tmp_path / "gone.bin"), good, inside_a_file], True, StatMemo(tmp_path / "cache"))
    assert sorted(errors) == [0, 2]
    assert isinstance(errors[0], FileNotFoundError) and isinstance(errors[2], NotADirectoryError)
    assert keys[1] == _hashes([good])[0]


def test_memo_files_are_merged_and_still_answer(tmp_path, monkeypatch):
    monkeypatch.setattr(StatMemo, "MERGE_AT", 3)
    files = [_write(tmp_path / f"f{i}.bin", bytes([i])) for i in range(6)]
    settle()
    expected = []
    for path in files:  # one memo file per pass
        keys, _ = _keys([path], tmp_path / "cache")
        expected.append(keys[0])
    parts = [d for d in (tmp_path / "cache" / "stat-memo").iterdir() if d.is_dir()]
    assert 1 <= len(parts) <= 3  # six flushes, merged once past three
    _no_reads(monkeypatch)
    keys, _ = _keys(files, tmp_path / "cache")
    np.testing.assert_array_equal(keys, np.array(expected))


@pytest.mark.parametrize("value", ["some text", 3.5, ("a", 1.0)])
def test_inline_values_are_keyed_by_their_text(value):
    keys, errors = content_keys([value, value], False)
    assert not errors
    np.testing.assert_array_equal(keys, _hashes([value, value], file_based=False))


def _store_with_segments(root, *batches):
    """A FeatureStore holding one segment per batch of (key, value) items; value row = [v, v]."""
    store = FeatureStore(root, "fp", {"x": ArraySpec((2,), "<f4")})
    for batch in batches:
        keys = np.array([k for k, _ in batch], f"S{KEY_BYTES}")
        tmp, arrays = store.open_segment(len(batch))
        arrays["x"][:] = [[v, v] for _, v in batch]
        store.commit_segment(tmp, arrays, keys, np.ones(len(batch), bool))
    return store


def test_store_lookups_span_segments_and_survive_reopening(tmp_path):
    _store_with_segments(tmp_path, [(b"b" * 16, 1.0), (b"a" * 16, 2.0)], [(b"c" * 16, 3.0)])
    store = FeatureStore(tmp_path, "fp", {"x": ArraySpec((2,), "<f4")})  # reopened: memory-mapped indexes
    keys = np.array([b"c" * 16, b"z" * 16, b"a" * 16, b"b" * 16], f"S{KEY_BYTES}")
    segment, slot = store.lookup(keys)
    assert segment.tolist()[1] == -1 and len(store) == 3
    rows = store.view(segment, slot)["x"][np.arange(4)]
    np.testing.assert_array_equal(rows[:, 0], [3.0, 0.0, 2.0, 1.0])  # the unknown key reads as zeros


def test_a_segment_without_a_sorted_index_is_still_found(tmp_path):
    _store_with_segments(tmp_path, [(b"k" * 16, 5.0), (b"e" * 16, 6.0)])
    for folder in (tmp_path / "fp" / "segments").iterdir():  # as written before the index existed
        (folder / SortedIndex.KEYS).unlink()
        (folder / SortedIndex.VALUES).unlink()
    store = FeatureStore(tmp_path, "fp", {"x": ArraySpec((2,), "<f4")})
    segment, slot = store.lookup(np.array([b"e" * 16, b"k" * 16], f"S{KEY_BYTES}"))
    np.testing.assert_array_equal(store.view(segment, slot)["x"][np.arange(2)][:, 0], [6.0, 5.0])


def test_many_segments_are_merged_into_one_index_that_finds_every_item(tmp_path, monkeypatch):
    monkeypatch.setattr(FeatureStore, "MERGE_AT", 2)
    batches = [[(bytes([65 + i]) * 16, float(i))] for i in range(7)]  # 7 segments, one item each
    store = _store_with_segments(tmp_path, *batches[:3])  # the 3rd segment triggers a merge
    assert store.merged is not None and store.indexes == {}
    store = _store_with_segments(tmp_path, *batches[3:])  # 2 more searched alone, then a merge of the old + 3
    merged = [p for p in (tmp_path / "fp" / "merged").iterdir() if not p.name.startswith(".")]
    assert len(merged) == 1  # the older merged index was replaced
    for reopened in (store, FeatureStore(tmp_path, "fp", {"x": ArraySpec((2,), "<f4")})):
        assert len(reopened.segment_names) == 7 and len(reopened) == 7 and len(reopened.indexes) <= 2
        keys = np.array([bytes([65 + i]) * 16 for i in (6, 0, 3, 5)] + [b"z" * 16], f"S{KEY_BYTES}")
        segment, slot = reopened.lookup(keys)
        assert segment[-1] == -1
        np.testing.assert_array_equal(reopened.view(segment, slot)["x"][np.arange(5)][:, 0], [6, 0, 3, 5, 0])


def test_a_merged_index_over_a_removed_segment_is_ignored(tmp_path, monkeypatch):
    monkeypatch.setattr(FeatureStore, "MERGE_AT", 1)
    _store_with_segments(tmp_path, [(b"a" * 16, 1.0)], [(b"b" * 16, 2.0)])
    first = sorted((tmp_path / "fp" / "segments").iterdir())[0]
    shutil.rmtree(first)  # a user cleaned up by hand
    store = FeatureStore(tmp_path, "fp", {"x": ArraySpec((2,), "<f4")})
    assert store.merged is None
    segment, slot = store.lookup(np.array([b"a" * 16, b"b" * 16], f"S{KEY_BYTES}"))
    assert segment[0] == -1
    assert store.view(segment, slot)["x"][np.arange(2)][1, 0] == 2.0


def test_a_merged_index_maps_to_segments_by_name_not_position(tmp_path, monkeypatch):
    monkeypatch.setattr(FeatureStore, "MERGE_AT", 2)
    late = FeatureStore(tmp_path, "fp", {"x": ArraySpec((2,), "<f4")})  # a second writer, opened on an empty store
    _store_with_segments(tmp_path, *[[(bytes([65 + i]) * 16, float(i))] for i in range(3)])  # merged
    tmp, arrays = late.open_segment(1)
    arrays["x"][:] = [[9.0, 9.0]]
    late.commit_segment(tmp, arrays, np.array([b"z" * 16], f"S{KEY_BYTES}"), np.ones(1, bool))
    written = [p for p in (tmp_path / "fp" / "segments").iterdir() if (p / "keys.npy").is_file()
               and np.load(p / "keys.npy")[0] == b"z" * 16]
    written[0].rename(written[0].parent / "00000-00000000")  # its name sorts before every merged segment
    store = FeatureStore(tmp_path, "fp", {"x": ArraySpec((2,), "<f4")})
    assert store.merged is not None and store.merged_segments.tolist() == [1, 2, 3]
    keys = np.array([b"z" * 16] + [bytes([65 + i]) * 16 for i in (2, 0, 1)], f"S{KEY_BYTES}")
    segment, slot = store.lookup(keys)
    np.testing.assert_array_equal(store.view(segment, slot)["x"][np.arange(4)][:, 0], [9, 2, 0, 1])


@pytest.mark.parametrize("parent", ["fp/segments", "fp/merged", "stat-memo"])
def test_what_a_killed_process_left_is_swept_when_stale(tmp_path, parent):
    folder = tmp_path / parent
    for name in (".trash-a", ".tmp-old", ".tmp-live"):
        (folder / name).mkdir(parents=True)
        (folder / name / "x.npy").write_bytes(b"0")
    old = time.time() - STALE_TEMP_S - 60
    for path in (folder / ".tmp-old", folder / ".tmp-old" / "x.npy"):
        os.utime(path, (old, old))
    if parent.startswith("fp"):
        FeatureStore(tmp_path, "fp", {"x": ArraySpec((2,), "<f4")})
    else:
        StatMemo(tmp_path)
    assert sorted(p.name for p in folder.iterdir()) == [".tmp-live"]


def test_memory_is_released_after_large_passes_only(monkeypatch):
    from polymodal.utils import memory

    calls = []
    monkeypatch.setattr(memory, "_malloc_trim", lambda: calls.append)
    assert not memory.release_memory(memory.LARGE_ROWS - 1) and calls == []
    assert memory.release_memory(memory.LARGE_ROWS) and calls == [0]
    monkeypatch.setattr(memory, "_malloc_trim", lambda: None)  # not glibc: nothing to call
    assert not memory.release_memory(10 * memory.LARGE_ROWS)


def test_a_copy_that_keeps_the_old_mtime_is_not_remembered_until_settled(tmp_path):
    path = tmp_path / "copied.bin"
    _write(path, b"abc")
    past = time.time() - 100
    os.utime(path, (past, past))  # like cp -p: an old mtime, but a fresh ctime
    memo = StatMemo(tmp_path / "cache")
    content_keys([str(path)], True, memo)
    assert memo._pending == []


def test_a_shard_replaced_under_the_same_path_is_read_anew(tmp_path):
    shard = tmp_path / "shard.npy"
    np.save(shard, np.array([[1, 2]], np.int16))
    settle()
    before, _ = _keys([f"{shard}#0"], tmp_path / "cache")  # remembered by the memo
    np.save(tmp_path / "new.npy", np.array([[7, 8]], np.int16))
    os.replace(tmp_path / "new.npy", shard)
    settle()
    after, _ = _keys([f"{shard}#0"], tmp_path / "cache")
    assert after[0] == _hashes([f"{shard}#0"])[0] != before[0]


def test_a_packed_row_outside_its_shard_is_reported_not_raised(tmp_path):
    shard = tmp_path / "shard.npy"
    np.save(shard, np.zeros((2, 3), np.float32))
    _, errors = content_keys([f"{shard}#1", f"{shard}#5"], True, StatMemo(tmp_path / "cache"))
    assert list(errors) == [1] and "outside" in str(errors[1])


def test_a_memo_that_cannot_be_written_warns_and_still_answers(tmp_path, monkeypatch):
    files = [_write(tmp_path / f"f{i}.bin", bytes([i])) for i in range(3)]
    settle()

    def read_only(parent, index, segments=None):
        raise PermissionError("read-only file system")

    monkeypatch.setattr(keys_module, "publish_index", read_only)
    with pytest.warns(UserWarning, match="cannot write the stat memo"):
        keys, errors = _keys(files, tmp_path / "cache")
    assert not errors
    np.testing.assert_array_equal(keys, _hashes(files))


def test_a_frame_folder_is_keyed_by_its_frames_in_the_order_they_are_read(tmp_path):
    """Unpadded frame numbers (``2.png`` before ``10.png``) in the natural order the video reader
    uses; a file that is not a frame leaves the key alone."""
    import hashlib

    from PIL import Image

    folder = tmp_path / "clip"
    folder.mkdir()
    for i in range(12):
        Image.fromarray(np.full((4, 4), 20 * i, np.uint8)).save(folder / f"{i}.png")
    digest = hashlib.blake2b(digest_size=KEY_BYTES)
    for i in range(12):  # 0, 1, 2, ..., 10, 11: not 0, 1, 10, 11, 2, ...
        digest.update(f"{i}.png".encode() + b"\0" + (folder / f"{i}.png").read_bytes())
    key = content_key(str(folder), True)
    assert key == digest.digest()
    (folder / "notes.txt").write_text("not a frame")
    assert content_key(str(folder), True) == key


def test_a_full_disk_is_an_error_naming_the_cache_not_a_crash_of_the_process(tmp_path, monkeypatch):
    """Writing through a memory map into a sparse file on a full disk killed the process with
    SIGBUS (exit 135, no message) and left the segment behind."""
    import errno

    store = FeatureStore(tmp_path, "fp", {"x": ArraySpec((1024,), "<f4")})

    def full(fd, offset, length):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "posix_fallocate", full)
    with pytest.raises(OSError, match=r"the feature cache needs 4.0 MiB more for 1,024 item\(s\)") as info:
        store.open_segment(1024)
    assert info.value.errno == errno.ENOSPC and info.value.filename == str(store.folder)
    assert not list((store.folder / "segments").glob(".tmp-*"))  # the reserved segment went with the error


def test_the_same_manifest_object_or_its_equal_in_the_same_folder_holds_the_same_rows(tmp_path):
    frame = pd.DataFrame({"image": ["a.png", "b.png"], "label": [0, 1]})
    manifest = read_manifest(frame, root=tmp_path)
    assert same_rows(manifest, manifest)
    assert same_rows(manifest, read_manifest(frame.copy(), root=tmp_path))  # read twice: equal table, same root
    (tmp_path / "other").mkdir()
    assert not same_rows(manifest, read_manifest(frame, root=tmp_path / "other"))  # its paths name other files
    assert not same_rows(manifest, manifest.subset([0]))
    assert not same_rows(manifest, read_manifest(frame.assign(label=[1, 0]), root=tmp_path))
