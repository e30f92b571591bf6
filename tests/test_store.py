"""The store: reuse, key changes, corrupt entries and parallel makers (edgebench.store)."""

from __future__ import annotations

import json
import multiprocessing as mp
import time
from enum import Enum
from pathlib import Path

import pytest

from edgebench.store import (RememberedFailure, Store, child_key, digest, failed_path, failure_reason, read_json,
                             read_meta)


def _save(value, folder: Path) -> dict:
    (folder / "value.json").write_text(json.dumps(value))
    return {"note": "saved"}


def _load(folder: Path):
    return read_json(folder / "value.json")


class Maker:
    def __init__(self, value):
        self.value, self.calls = value, 0

    def __call__(self):
        self.calls += 1
        return self.value


def test_second_get_is_a_hit_and_make_is_not_called(tmp_path):
    store, key = Store(tmp_path), child_key(None, {"model": "lenet", "seed": 0})
    make = Maker({"acc": 0.9})
    value, hit, path = store.get_or_make("models", key, make, _save, _load, name="lenet")
    assert (value, hit, make.calls) == ({"acc": 0.9}, False, 1)
    assert path == tmp_path / "models" / f"lenet-{digest(key)}" == store.path("models", key, "lenet")
    meta = read_meta(path)
    assert meta["key"] == key and meta["digest"] == digest(key) and meta["note"] == "saved" and meta["created"]
    value, hit, again = store.get_or_make("models", key, make, _save, _load, name="lenet")
    assert (value, hit, again, make.calls) == ({"acc": 0.9}, True, path, 1)
    assert not list(path.parent.glob("*.tmp-*")), "no temporary left behind"


def test_a_changed_key_is_a_miss(tmp_path):
    store = Store(tmp_path)
    a, b = child_key("p1", {"sparsity": 0.5}), child_key("p1", {"sparsity": 0.6})
    c = child_key("p2", {"sparsity": 0.5})  # same step config, another parent
    make = Maker(1)
    paths = {store.get_or_make("step", k, make, _save, _load).path for k in (a, b, c)}
    assert make.calls == 3 and len(paths) == 3


def test_digest_is_canonical():
    class Kind(Enum):
        a = "a"

    assert digest({"x": 1, "y": [1, 2]}) == digest({"y": [1, 2], "x": 1})
    assert digest({"k": Kind.a}) == digest({"k": "a"})
    assert len(digest({})) == 16 and digest({"x": 1}) != digest({"x": 2})
    assert child_key(digest({"x": 1}), {"s": Kind.a}) == {"parent": digest({"x": 1}), "config": {"s": "a"}}


@pytest.mark.parametrize("bad_file", ["value.json", "meta.json"])
def test_corrupt_entry_is_named_moved_aside_and_remade(tmp_path, caplog, bad_file):
    store, key = Store(tmp_path), {"k": 1}
    _, _, path = store.get_or_make("models", key, Maker([1, 2]), _save, _load)
    garbage = b"\x00\xff garbage \x80"
    (path / bad_file).write_bytes(garbage)
    make = Maker([1, 2])
    with caplog.at_level("WARNING"):
        value, hit, again = store.get_or_make("models", key, make, _save, _load)
    assert (value, hit, again, make.calls) == ([1, 2], False, path, 1)
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any(str(path / bad_file) in m for m in warned), warned
    (aside,) = path.parent.glob(path.name + ".corrupt-*")
    assert (aside / bad_file).read_bytes() == garbage, "the bad entry is kept for inspection"
    assert store.get_or_make("models", key, make, _save, _load).hit and make.calls == 1


def test_failed_make_stores_nothing(tmp_path):
    store = Store(tmp_path)

    def boom():
        raise RuntimeError("diverged")

    with pytest.raises(RuntimeError, match="diverged"):
        store.get_or_make("models", {"k": 1}, boom, _save, _load)
    assert [p.name for p in (tmp_path / "models").iterdir() if not p.name.endswith(".lock")] == []


class SameEachTime(ValueError):
    pass


def test_a_failure_the_key_decides_is_remembered_until_its_file_goes(tmp_path):
    store = Store(tmp_path)
    calls = []

    def nan():
        calls.append(1)
        raise SameEachTime("training loss is nan at epoch 0, batch 1")

    for _ in range(2):  # the second ask does not call make: it raises the remembered failure at once
        with pytest.raises((SameEachTime, RememberedFailure), match="training loss is nan at epoch 0, batch 1"):
            store.get_or_make("steps", {"k": 1}, nan, _save, _load, what="step prune", remember=(SameEachTime,))
    assert len(calls) == 1
    failed = failed_path(store.path("steps", {"k": 1}))
    with pytest.raises(RememberedFailure) as err:
        store.get_or_make("steps", {"k": 1}, nan, _save, _load, what="step prune", remember=(SameEachTime,))
    said = str(err.value)
    assert said.startswith("making the step prune failed before") and f"delete {failed}" in said and "\n" not in said
    assert json.loads(failed.read_text())["error"] == "SameEachTime"
    # another key is not affected; a redo tries again and, made, forgets the failure
    assert store.get_or_make("steps", {"k": 2}, Maker(3), _save, _load, remember=(SameEachTime,)).value == 3
    entry = store.get_or_make("steps", {"k": 1}, Maker(5), _save, _load, remember=(SameEachTime,), redo=True)
    assert (entry.value, entry.hit, failed.exists()) == (5, False, False)
    assert len(calls) == 1


def test_an_unreadable_failure_record_still_stops_the_run(tmp_path):
    store = Store(tmp_path)
    failed = failed_path(store.path("steps", {"k": 1}))
    failed.parent.mkdir(parents=True, exist_ok=True)
    failed.write_text("{not json")
    with pytest.raises(RememberedFailure, match="failed before, and would fail the same way: no readable reason"):
        store.get_or_make("steps", {"k": 1}, Maker(1), _save, _load, remember=(SameEachTime,))
    assert failure_reason(failed) == "no readable reason"


def test_other_failures_are_not_remembered(tmp_path):
    store = Store(tmp_path)

    def gone():
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        store.get_or_make("steps", {"k": 1}, gone, _save, _load, remember=(SameEachTime,))
    assert not failed_path(store.path("steps", {"k": 1})).exists()
    assert store.get_or_make("steps", {"k": 1}, Maker(7), _save, _load, remember=(SameEachTime,)).value == 7


def test_scope_parts_files_and_folders(tmp_path, caplog):
    scope = Store(tmp_path).scope("lottery", {"run": 1})
    assert scope.root == tmp_path / "lottery" / digest({"run": 1}) and read_meta(scope.root)["key"] == {"run": 1}
    save_file = lambda v, f: f.write_text(json.dumps(v))  # noqa: E731
    make = Maker({"m": [1, 0]})
    assert not scope.part("level_1/mask.json", make, save_file, read_json, file=True).hit
    entry = scope.part("level_1/mask.json", make, save_file, read_json, file=True)
    assert entry.hit and entry.value == {"m": [1, 0]} and make.calls == 1
    entry.path.write_bytes(b"\x00" * 10)
    with caplog.at_level("WARNING"):
        assert not scope.part("level_1/mask.json", make, save_file, read_json, file=True, what="mask").hit
    assert any(str(entry.path) in r.getMessage() for r in caplog.records if r.levelname == "WARNING")
    assert list(entry.path.parent.glob("mask.json.corrupt-*")) and make.calls == 2
    branch = scope.part("level_1/ticket", Maker([3]), _save, _load)
    assert not branch.hit and branch.path == scope.root / "level_1" / "ticket"
    assert scope.part("level_1/ticket", Maker([4]), _save, _load, redo=True).value == [4]
    assert _load(branch.path) == [4]


def _slow_make(counter: str):
    with open(counter, "a") as f:
        f.write("made\n")
    time.sleep(1.0)  # long enough that the other process asks while this one is making
    return {"weights": [0.5, 0.25]}


def _ask(root: str, counter: str, barrier, results) -> None:
    barrier.wait()
    value, hit, path = Store(root).get_or_make("models", {"same": "key"}, lambda: _slow_make(counter), _save, _load)
    results.put((value, hit, str(path)))


def test_two_processes_asking_at_once_make_it_once(tmp_path):
    ctx = mp.get_context("fork")
    barrier, results = ctx.Barrier(2), ctx.Queue()
    counter = tmp_path / "made.txt"
    procs = [ctx.Process(target=_ask, args=(str(tmp_path / "store"), str(counter), barrier, results)) for _ in range(2)]
    for p in procs:
        p.start()
    got = [results.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    assert counter.read_text().count("made") == 1, "make ran once"
    assert got[0][0] == got[1][0] == {"weights": [0.5, 0.25]}
    assert sorted(hit for _, hit, _ in got) == [False, True] and got[0][2] == got[1][2]
