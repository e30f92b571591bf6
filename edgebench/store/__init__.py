"""The store: the one place where trained and derived models are kept, and how every stored file is written.

* :func:`digest` is the one hash function of the codebase: sha256 of canonical JSON (sorted keys,
  enums as their values, anything else JSON cannot encode as ``str``), 16 hex characters. The
  dense baselines in the store, the lottery-ticket levels and the sweep ids and config hashes all use it.
* :func:`load_objects` reads a stored object (a step's output: its model, spec, plots, children) with
  ``torch.load(weights_only=True)`` and an allowlist fixed in code (:func:`safe_globals`: the module
  classes of torch.nn, torch.ao.nn, torchvision and edgebench, edgebench's dataclasses and enums), so
  a stored file can name no other global and run no code; one that tries is unreadable (set aside).
* :func:`atomic_write` / :func:`atomic_save` are the one atomic writer: a file or folder is written
  next to its place and renamed into it, so nothing is ever half written. :func:`read` names the
  file in any error; :func:`load_or_set_aside` moves what cannot be read to ``<name>.corrupt-<time>``
  (kept for inspection) with a warning naming it, so the caller makes it again.
* :class:`Store` is content addressed: ``Store(root).get_or_make(kind, key, make, save, load)``
  returns the entry ``<root>/<kind>/[<name>-]<digest(key)>/`` (value, hit, path), making it only
  when it is missing or unreadable. A chain's key is ``child_key(parent digest, this step's config)``,
  so an entry's key covers everything it was made from. Every entry is made under its own
  file lock (``<entry>.lock``), so parallel jobs never make the same entry twice, and is written
  whole with a ``meta.json`` (key, digest, created, ``files``: the sha256 of every file in it, and
  what ``save`` adds). Every load checks those hashes first: an entry with a changed, missing or
  unlisted-hash file (damaged on disk, or written before hashes were kept) is named in a warning,
  set aside and made again, never handed out. A one-file part keeps its hash in ``<file>.sha256``.
  :meth:`Store.scope` gives a store rooted inside one entry whose parts are named by hand
  (the lottery's ``level_<L>/ticket/``, ``level_<L>/mask.pt``), each got or made the same way.
* **A remembered failure.** ``get_or_make(..., remember=(SomeError,))``: when ``make`` raises one of those errors
  (a failure the key alone decides, such as a training loss that turns NaN), ``<entry>.failed.json`` keeps its
  class, message and time, and every later ``get_or_make`` for that key raises :class:`RememberedFailure` at once
  instead of making it again (the study's other jobs of a failing seed fail in seconds, not after the same
  retraining). Deleting the file (``python -m edgebench.store`` lists them) or ``redo=True`` tries again; a key
  that changes (another setting, a new code version) is a new entry.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from enum import Enum
from pathlib import Path
from typing import Any, Callable, Generic, NamedTuple, TypeVar


log = logging.getLogger(__name__)
T = TypeVar("T")

META = "meta.json"
HASH_SUFFIX = ".sha256"  # a one-file part's hash, beside it


# ---------------------------------------------------------------------------------------------- hashing
def _json_default(o: Any) -> Any:
    if isinstance(o, Enum):
        return o.value
    return str(o)


def canonical(obj: Any) -> str:
    """``obj`` as canonical JSON: sorted keys, enums as their values, other non-JSON values as ``str``."""
    return json.dumps(obj, sort_keys=True, default=_json_default)


def plain(obj: Any) -> Any:
    """``obj`` as plain JSON values (dicts, lists, strings, numbers), as :func:`digest` sees it."""
    return json.loads(json.dumps(obj, default=_json_default))


def digest(obj: Any) -> str:
    """The one hash of the codebase: sha256 of :func:`canonical` JSON, first 16 hex characters."""
    return hashlib.sha256(canonical(obj).encode()).hexdigest()[:16]


def child_key(parent: str | None, config: Any) -> dict:
    """The key of an entry made from the entry with digest ``parent`` (None: from nothing stored) by ``config``."""
    return {"parent": parent, "config": plain(config)}


# ---------------------------------------------------------------------------------- reading and writing
class UnreadableFileError(OSError):
    """A stored file exists but cannot be read; the message names the file and the reason."""


def read(path: str | Path, fn: Callable[[Path], T] | None = None) -> T:
    """``fn(path)`` (default: ``torch.load`` on the CPU, weights only); any failure is re-raised as
    :class:`UnreadableFileError` naming ``path`` (torch's own message names no file)."""
    path = Path(path)
    try:
        if fn is None:
            import torch

            return torch.load(path, map_location="cpu", weights_only=True)
        return fn(path)
    except UnreadableFileError:
        raise
    except Exception as e:
        raise UnreadableFileError(f"{path}: {type(e).__name__}: {e}") from e


# Where the classes a stored object may hold come from: every nn.Module subclass defined under these prefixes, and the
# dataclasses and enums of edgebench's packages below. Fixed here, never read from a file. A new kind of step output
# that holds something else (a function, a numpy array) fails to load and is made again: add its class here.
_MODULE_PREFIXES = ("torch.nn.", "torch.ao.nn.", "torchvision.", "edgebench.")
_EDGEBENCH_PACKAGES = ("edgebench.config", "edgebench.losses", "edgebench.mask", "edgebench.models",
                       "edgebench.models.small", "edgebench.models.ram", "edgebench.quant", "edgebench.quant.kure",
                       "edgebench.quant.qat", "edgebench.quant.quantizers", "edgebench.quant.runtime",
                       "edgebench.export.artifact", "edgebench.methods", "edgebench.methods.base",
                       "edgebench.methods.distillation", "edgebench.methods.lottery", "edgebench.methods.low_rank",
                       "edgebench.methods.pruning", "edgebench.methods.quantization", "edgebench.methods.student")


def _subclasses(cls: type) -> set[type]:
    out = set()
    for sub in cls.__subclasses__():
        out.add(sub)
        out |= _subclasses(sub)
    return out


_SAFE: list | None = None


def safe_globals() -> list:
    """The classes :func:`load_objects` lets a stored object hold (see ``_MODULE_PREFIXES``)."""
    global _SAFE
    if _SAFE is None:
        import dataclasses
        import importlib

        import torch.ao.nn.intrinsic
        import torch.ao.nn.qat
        import torch.ao.nn.quantized
        import torch.ao.nn.quantized.dynamic
        import torchvision.models  # noqa: F401
        from torch import nn

        mods = [importlib.import_module(m) for m in _EDGEBENCH_PACKAGES]
        found = {c for c in _subclasses(nn.Module) | {nn.Module}
                 if c.__module__.startswith(_MODULE_PREFIXES) and "<locals>" not in c.__qualname__}
        for m in mods:
            found |= {v for v in vars(m).values() if isinstance(v, type) and v.__module__.startswith("edgebench.")
                      and (dataclasses.is_dataclass(v) or issubclass(v, Enum))}
        _SAFE = sorted(found, key=lambda c: f"{c.__module__}.{c.__qualname__}")
    return _SAFE


def load_objects(path: str | Path) -> Any:
    """``torch.load`` of a stored object on the CPU, weights only, allowing just :func:`safe_globals`."""
    import torch

    with torch.serialization.safe_globals(safe_globals()):
        return torch.load(path, map_location="cpu", weights_only=True)


def read_json(path: str | Path) -> Any:
    return read(path, lambda p: json.loads(p.read_text()))


def set_aside(path: str | Path) -> Path:
    """Move the file or folder ``path`` to ``<name>.corrupt-<unix time>`` next to it; returns the new path."""
    path = Path(path)
    stamp = int(time.time())
    bad = path.with_name(f"{path.name}.corrupt-{stamp}")
    n = 1
    while bad.exists():  # two in the same second: never overwrite an earlier one
        bad = path.with_name(f"{path.name}.corrupt-{stamp}-{n}")
        n += 1
    os.replace(path, bad)
    return bad


def load_or_set_aside(path: str | Path, loader: Callable[[Path], T], what: str = "cached file") -> T | None:
    """``loader(path)``, or None when ``path`` does not exist or cannot be loaded.

    An unloadable ``path`` (file or folder) is logged as a warning with its path and the reason,
    moved aside (:func:`set_aside`, kept for inspection) and None is returned, so the caller redoes it.
    """
    path = Path(path)
    if not path.exists():
        return None
    try:
        return loader(path)
    except Exception as e:  # corrupt, truncated or incompatible
        reason = str(e) if isinstance(e, UnreadableFileError) else f"{type(e).__name__}: {e}"
        bad = set_aside(path)
        log.warning("%s %s is unreadable (%s); moved to %s and redoing it", what, path, reason, bad)
        return None


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink()


def atomic_write(path: str | Path, write: Callable[[Path], Any]) -> Path:
    """Write the file or folder ``path`` whole or not at all.

    ``write(tmp)`` creates ``tmp`` (a file, or a folder it makes itself) next to ``path``; it then
    replaces ``path`` (an existing folder there is removed first). On any failure ``tmp`` is removed
    and ``path`` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    _remove(tmp)
    try:
        write(tmp)
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        os.replace(tmp, path)
    except BaseException:
        _remove(tmp)
        raise
    return path


def atomic_save(obj: Any, path: str | Path) -> Path:
    """``torch.save(obj, path)`` through :func:`atomic_write`."""
    import torch

    return atomic_write(path, lambda tmp: torch.save(obj, tmp))


# ------------------------------------------------------------------------------------------ the store
class RememberedFailure(RuntimeError):
    """Making this store entry failed before with an error the key alone decides (``<entry>.failed.json``)."""


FAILED_SUFFIX = ".failed.json"  # a remembered failure, beside its entry


def failed_path(path: str | Path) -> Path:
    """Where the failure of the entry at ``path`` is remembered: ``<entry>.failed.json``."""
    path = Path(path)
    return path.with_name(path.name + FAILED_SUFFIX)


def failure_reason(failed: Path) -> str:
    """The reason a remembered-failure record (``<entry>.failed.json``) gives: ``"Error: message (at time)"``."""
    try:
        rec = json.loads(Path(failed).read_text())
        return f"{rec['error']}: {rec['message']} (at {rec['when']})"
    except (OSError, ValueError, KeyError, TypeError):
        return "no readable reason"


def _remembered(path: Path, what: str) -> None:
    """Raise :class:`RememberedFailure` when making the entry at ``path`` failed before."""
    failed = failed_path(path)
    if failed.is_file():
        raise RememberedFailure(f"making the {what} failed before, and would fail the same way: "
                                f"{failure_reason(failed)}. To try again, delete {failed}")


class Entry(NamedTuple, Generic[T]):
    value: T
    hit: bool  # True: loaded from the store; False: made now
    path: Path | None


class Store:
    """A content-addressed, atomic, lock-protected and self-healing place for made things.

    ``root`` is the store's folder; ``key`` (for a scope) the key of the entry it lives in.
    """

    def __init__(self, root: str | Path, key: Any = None):
        self.root = Path(root)
        self.key = key

    def path(self, kind: str, key: Any, name: str | None = None) -> Path:
        """Where the entry for ``key`` lives: ``<root>/<kind>/[<name>-]<digest(key)>``."""
        h = digest(key)
        return self.root / kind / (f"{name}-{h}" if name else h)

    def get_or_make(self, kind: str, key: Any, make: Callable[[], T], save: Callable[[T, Path], dict | None],
                    load: Callable[[Path], T], *, name: str | None = None, what: str | None = None,
                    redo: bool = False, remember: tuple[type[BaseException], ...] = ()) -> Entry[T]:
        """The stored value for ``key``, or ``make()`` saved there first.

        ``save(value, folder)`` writes the value's files into ``folder`` (which exists) and may return
        a dict added to ``meta.json``; ``load(folder)`` reads them back and must raise (best through
        :func:`read`, which names the file) on anything it cannot use: that entry is then named in a
        warning, moved aside as ``<name>.corrupt-<time>`` and made again. ``redo`` makes it again anyway.
        ``remember``: errors of ``make`` that the key alone decides; one is kept beside the entry and raised again
        as :class:`RememberedFailure` without calling ``make`` (see the module's notes).
        """
        path = self.path(kind, key, name)
        return self._get_or_make(path, key, digest(key), make, save, load, what or f"{kind} store entry",
                                 redo=redo, file=False, remember=remember)

    def part(self, rel: str, make: Callable[[], T], save: Callable[[T, Path], dict | None],
             load: Callable[[Path], T], *, what: str | None = None, redo: bool = False,
             file: bool = False) -> Entry[T]:
        """Like :meth:`get_or_make` for a part named ``rel`` inside this scope (see :meth:`scope`).

        ``file=True``: the part is one file, ``save(value, file)`` writes it (no ``meta.json``).
        """
        path = self.root / rel
        return self._get_or_make(path, {"scope": self.key, "part": rel}, digest(self.key) if self.key is not None else None,
                                 make, save, load, what or f"store part {rel}", redo=redo, file=file)

    def scope(self, kind: str, key: Any, name: str | None = None) -> "Store":
        """A store rooted at the entry folder for ``key``: for a result made in parts (:meth:`part`)
        that are got or made one by one (resumable), all covered by ``key``."""
        path = self.path(kind, key, name)
        path.mkdir(parents=True, exist_ok=True)
        meta = path / META
        if not meta.exists():
            atomic_write(meta, lambda tmp: tmp.write_text(json.dumps(_meta(key, digest(key)), indent=2)))
        return Store(path, key)

    def _get_or_make(self, path: Path, key: Any, h: str | None, make, save, load, what: str, *,
                     redo: bool, file: bool, remember: tuple[type[BaseException], ...] = ()) -> Entry:
        path.parent.mkdir(parents=True, exist_ok=True)
        from edgebench import locks

        # says after a few seconds what it waits for, ends after store_lock_timeout_s, removes the lock file after
        with locks.held(str(path) + ".lock", what, path):
            if not redo:
                loaded = load_or_set_aside(path, (lambda p: _load_file(p, load)) if file
                                           else (lambda p: _load_entry(p, h, load)), what)
                if loaded is not None:
                    return Entry(loaded, True, path)
                _remembered(path, what)
            try:
                value = make()
            except remember as e:
                record = {"error": type(e).__name__, "message": str(e), "when": time.strftime("%Y-%m-%dT%H:%M:%S"),
                          "key": plain(key)}
                atomic_write(failed_path(path), lambda tmp: tmp.write_text(json.dumps(record, indent=2)))
                raise
            failed_path(path).unlink(missing_ok=True)  # made after all (redo): the old failure no longer holds

            def write(tmp: Path) -> None:
                if file:
                    save(value, tmp)
                    return
                tmp.mkdir()
                extra = save(value, tmp) or {}
                meta = {**_meta(key, h), **extra, "files": _file_hashes(tmp)}
                (tmp / META).write_text(json.dumps(meta, indent=2, default=_json_default))

            atomic_write(path, write)
            if file:  # after the file: a crash between the two leaves a file without its hash, which is made again
                atomic_write(_hash_path(path), lambda tmp: tmp.write_text(sha256_file(path)))
            return Entry(value, False, path)


def _meta(key: Any, h: str | None) -> dict:
    return {"key": plain(key), "digest": h, "created": time.strftime("%Y-%m-%dT%H:%M:%S")}


def read_meta(folder: str | Path) -> dict:
    """An entry's ``meta.json`` (raises :class:`UnreadableFileError` naming it)."""
    return read_json(Path(folder) / META)


def sha256_file(path: str | Path) -> str:
    """The sha256 (hex) of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _file_hashes(folder: Path) -> dict[str, str]:
    """``{path relative to folder: sha256}`` of every file under ``folder`` but its ``meta.json``."""
    return {p.relative_to(folder).as_posix(): sha256_file(p) for p in sorted(folder.rglob("*"))
            if p.is_file() and p.relative_to(folder).as_posix() != META}


def _check_hash(path: Path, want: Any) -> None:
    """Raise :class:`UnreadableFileError` naming ``path`` unless its sha256 is ``want``."""
    if not path.is_file():
        raise UnreadableFileError(f"{path}: missing (listed in its entry's {META})")
    got = sha256_file(path)
    if got != want:
        raise UnreadableFileError(f"{path}: sha256 {got[:16]}... differs from the stored {str(want)[:16]}... "
                                  "(changed on disk since it was written)")


def _hash_path(path: Path) -> Path:
    return path.with_name(path.name + HASH_SUFFIX)


def _load_file(path: Path, load: Callable[[Path], T]) -> T:
    """A one-file part: its hash in ``<file>.sha256`` checked, then ``load(path)``."""
    if not _hash_path(path).is_file():
        raise UnreadableFileError(f"{path}: no stored sha256 beside it ({_hash_path(path).name}); made again")
    _check_hash(path, read(_hash_path(path), lambda p: p.read_text().strip()))
    return load(path)


def _load_entry(path: Path, h: str | None, load: Callable[[Path], T]) -> T:
    if not path.is_dir():
        raise UnreadableFileError(f"{path}: not a folder")
    meta = read_meta(path)
    if not isinstance(meta, dict):
        raise UnreadableFileError(f"{path / META}: not a JSON object")
    stored = meta.get("digest")
    if h is not None and stored is not None and stored != h:
        raise UnreadableFileError(f"{path / META}: digest {stored}, expected {h}")
    files = meta.get("files")
    if not isinstance(files, dict):
        raise UnreadableFileError(f"{path / META}: no sha256 of the entry's files (written by an older edgebench); "
                                  "made again")
    for rel, want in files.items():
        _check_hash(path / rel, want)
    return load(path)
