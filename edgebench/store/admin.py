"""``python -m edgebench.store``: what the model store holds, and removing what is no longer needed.

    python -m edgebench.store                          # entries, their size, age and runs; totals; leftovers
    python -m edgebench.store --unused                 # what would go: entries no run names (a dry run)
    python -m edgebench.store --older-than 30d --yes   # remove entries no run has used for 30 days
    python -m edgebench.store --max-size 2GB --yes     # keep the entries under 2 GB, least recently used out first
    python -m edgebench.store --clean --yes            # unheld lock files, .corrupt-* set-asides, dead temporaries

The listing also names each remembered failure (``<entry>.failed.json``: a step or baseline whose training failed in a
way its key decides, such as a NaN loss); delete that file to have it made again.

The store (``results/cache``, :mod:`edgebench.store`) holds entries ``<kind>/<name>-<digest>/``: dense
baselines, each step's output (``steps``), the lottery's levels (``lottery``, an entry made of parts), deployed files
with their accuracy (``deployments``, used by the runs of the model they were exported from) and passed exporter
prechecks (``prechecks``, a few bytes each).

* **Uses.** A run uses an entry when one of its tags ``baseline.key`` or ``step.<i>.key`` names the entry's
  digest (found in the MLflow store, ``--tracking-uri``, every experiment, deleted runs left out). A scope
  entry (``lottery/<digest>``, key ``{dense, method}``) is used by the runs of the step entries made from it:
  same dense digest as their parent, same settings in their config; with no such step entry left, by the runs
  on that dense baseline whose ``chain`` tag (``pipeline`` on older runs) names the method. An entry no run uses is *unused*.
* **Last used** = the start of the newest run that uses the entry, else when it was made (``meta.json``'s
  ``created``). ``--older-than`` and ``--max-size`` (least recently used first) both go by it.
* **Safety.** Nothing is removed without ``--yes`` (or ``--delete``): the default prints what would go and the
  bytes it would free. An entry is removed only while this command holds its lock (``<entry>.lock`` and, for
  a scope, every part's lock) taken without waiting: one held by a live process (a run making or loading it)
  is kept. Entries made or used since the start of a run still RUNNING (its process alive) are kept too: that
  run tags what it uses only when it ends.
* **Lock files.** The store's locks (:mod:`edgebench.locks`) remove their file on release, while still
  holding it, and a waiter that finds its file gone locks the new one: no lock file is left per entry.
  Lock files left by older edgebench versions or a killed process are removed by ``--clean`` when no process
  holds them (taken without waiting, checked to be still the file at that path, unlinked while held, the same
  :func:`edgebench.locks.release`). An entry removed with ``--yes`` loses its lock the same way.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgebench import locks
from edgebench.naming import CHAIN_TAG, RENAMED_TAGS
from edgebench.store import FAILED_SUFFIX, META, failure_reason

ERROR = "edgebench: error: "
CORRUPT = re.compile(r"\.corrupt-\d+(-\d+)?$")
TMP = re.compile(r"\.tmp-(\d+)$")
DIGEST = re.compile(r"(?:^|-)([0-9a-f]{16})$")
STEP_TAG = re.compile(r"step\.\d+\.key")


class UsageError(Exception):
    """A wrong input: printed as one line naming it and the fix."""


# ------------------------------------------------------------------------------------------- what is there
@dataclass
class RunRef:
    run_id: str
    name: str
    start: float  # seconds since the epoch
    experiment: str


@dataclass
class Entry:
    kind: str
    name: str
    path: Path
    digest: str | None
    key: Any
    bytes: int
    created: float
    locks: list[Path]  # its own lock and, for a scope, its parts' locks
    runs: dict[str, RunRef] = field(default_factory=dict)  # run id -> run

    @property
    def last_used(self) -> float:
        return max([self.created, *(r.start for r in self.runs.values())])


@dataclass
class Lock:
    path: Path
    held: bool  # by a live process, right now


@dataclass
class Leftover:  # a .corrupt-* set-aside or a dead process's temporary
    path: Path
    bytes: int
    what: str


@dataclass
class Scan:
    root: Path
    entries: list[Entry]
    locks: list[Lock]
    set_asides: list[Leftover]
    temporaries: list[Leftover]
    runs_known: bool  # the MLflow store was read
    running_since: float | None  # start of the oldest run still RUNNING with a live process
    failures: list[Leftover] = field(default_factory=list)  # <entry>.failed.json: a remembered failure, its reason


def _bytes(path: Path) -> int:
    if path.is_file() or path.is_symlink():
        return path.lstat().st_size
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(dirpath, f)).st_size
            except OSError:
                pass
    return total


def _created(path: Path, meta: dict | None) -> float:
    made = (meta or {}).get("created")
    if isinstance(made, str):
        try:
            return time.mktime(time.strptime(made, "%Y-%m-%dT%H:%M:%S"))
        except ValueError:
            pass
    return path.stat().st_mtime


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _lock_held(path: Path) -> bool:
    fd = locks.try_lock(path, create=False)
    if fd is None:
        return path.exists()
    os.close(fd)
    return False


def scan(root: str | Path, tracking_uri: str | None) -> Scan:
    """Everything under the store ``root``; the runs that use each entry when ``tracking_uri`` is readable
    (None: not looked up)."""
    root = Path(root)
    entries: list[Entry] = []
    lock_paths: list[Path] = []
    set_asides: list[Leftover] = []
    temporaries: list[Leftover] = []
    failures: list[Leftover] = []

    def leftovers(folder: Path) -> list[Path]:
        """Lock files, set-asides and temporaries anywhere under ``folder`` (a scope's parts have their own)."""
        found = []
        for dirpath, dirs, files in os.walk(folder):
            for n in [*dirs, *files]:
                p = Path(dirpath) / n
                if n.endswith(".lock") or CORRUPT.search(n) or TMP.search(n):
                    found.append(p)
            dirs[:] = [d for d in dirs if not (CORRUPT.search(d) or TMP.search(d))]
        return found

    def sort_leftover(p: Path) -> bool:
        """File ``p`` as a lock, set-aside or temporary; False when it is none of them."""
        if CORRUPT.search(p.name):
            set_asides.append(Leftover(p, _bytes(p), "set-aside"))
        elif (m := TMP.search(p.name)) and not _pid_alive(int(m.group(1))):
            temporaries.append(Leftover(p, _bytes(p), f"temporary of process {m.group(1)} (gone)"))
        elif p.name.endswith(".lock"):
            lock_paths.append(p)
        else:
            return TMP.search(p.name) is not None  # a live process's temporary: not an entry
        return True

    for kind_dir in sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []:
        for p in sorted(kind_dir.iterdir()):
            if p.name.endswith(FAILED_SUFFIX):
                failures.append(Leftover(p, _bytes(p), failure_reason(p)))
            if sort_leftover(p) or not p.is_dir():
                continue
            try:
                meta = json.loads((p / META).read_text())
                meta = meta if isinstance(meta, dict) else None
            except (OSError, ValueError):
                meta = None
            m = DIGEST.search(p.name)
            h = (meta or {}).get("digest") or (m.group(1) if m else None)
            inner = leftovers(p)
            part_locks = [q for q in inner if q.name.endswith(".lock")]
            for q in inner:
                if not q.name.endswith(".lock"):
                    sort_leftover(q)
            lock_paths.extend(part_locks)
            size = _bytes(p) - sum(x.bytes for x in [*set_asides, *temporaries] if p in x.path.parents)
            entries.append(Entry(kind_dir.name, p.name, p, h, (meta or {}).get("key"), size, _created(p, meta),
                                 [Path(f"{p}.lock"), *part_locks]))
    locks = [Lock(p, _lock_held(p)) for p in lock_paths]
    runs_known, running_since = False, None
    if tracking_uri is not None:
        runs, running_since = _runs(tracking_uri)
        _attach(entries, runs)
        runs_known = True
    return Scan(root, entries, locks, set_asides, temporaries, runs_known, running_since, failures)


# ------------------------------------------------------------------------------------------------ the runs
@dataclass
class _Run:
    ref: RunRef
    keys: set[str]  # the digests its tags name
    baseline: str | None
    chain: str


def _runs(uri: str) -> tuple[list[_Run], float | None]:
    """Every active run of every experiment with the digests it names, and the start of the oldest RUNNING run
    whose process is alive (this host's runs are checked by pid; another host's count as alive)."""
    import socket

    from mlflow.entities import ViewType
    from mlflow.tracking import MlflowClient

    from edgebench.tracking import HOST_TAG, PID_START_TAG, PID_TAG, _process_alive

    client = MlflowClient(uri)
    exps = {e.experiment_id: e.name for e in client.search_experiments(view_type=ViewType.ACTIVE_ONLY)}
    out: list[_Run] = []
    running: list[float] = []
    host = socket.gethostname()
    if not exps:
        return out, None
    token = None
    while True:
        page = client.search_runs(list(exps), "", ViewType.ACTIVE_ONLY, max_results=1000, page_token=token)
        for r in page:
            tags = r.data.tags
            keys = {v for k, v in tags.items() if k == "baseline.key" or STEP_TAG.fullmatch(k)}
            start = (r.info.start_time or 0) / 1000
            ref = RunRef(r.info.run_id, r.info.run_name or "", start, exps.get(r.info.experiment_id, ""))
            out.append(_Run(ref, keys, tags.get("baseline.key"),
                                 tags.get(CHAIN_TAG, tags.get(RENAMED_TAGS[CHAIN_TAG], ""))))
            if r.info.status == "RUNNING":
                pid = tags.get(PID_TAG)
                if tags.get(HOST_TAG) != host or pid is None or _process_alive(int(pid), tags.get(PID_START_TAG)):
                    running.append(start)
        token = page.token
        if not token:
            break
    return out, (min(running) if running else None)


def _attach(entries: list[Entry], runs: list[_Run]) -> None:
    by_key: dict[str, list[_Run]] = {}
    for r in runs:
        for k in r.keys:
            by_key.setdefault(k, []).append(r)
    for e in entries:
        if e.digest is not None:
            e.runs = {r.ref.run_id: r.ref for r in by_key.get(e.digest, [])}
    steps = [e for e in entries if e.kind == "steps" and isinstance(e.key, dict)]
    for e in entries:  # a deployed file (edgebench.deploy) is used by the runs of the model it was exported from
        if e.kind == "deployments" and isinstance(e.key, dict):
            e.runs = {r.ref.run_id: r.ref for r in by_key.get(e.key.get("parent"), [])}
    for e in entries:
        key = e.key
        if not (isinstance(key, dict) and set(key) == {"dense", "method"} and isinstance(key["method"], dict)):
            continue
        # a scope (the lottery's levels): used through the step entries made from it
        settings = {k: v for k, v in key["method"].items() if k != "mask_layout"}
        made = [s for s in steps if s.key.get("parent") == key["dense"] and _config_has(s.key.get("config"), settings)]
        for s in made:
            e.runs.update(s.runs)
        if not made:
            e.runs.update({r.ref.run_id: r.ref for r in runs
                           if r.baseline == key["dense"] and e.kind in r.chain})


def _config_has(config: Any, settings: dict) -> bool:
    inner = config.get("config") if isinstance(config, dict) else None
    return isinstance(inner, dict) and all(inner.get(k) == v for k, v in settings.items())


# ------------------------------------------------------------------------------------------------- parsing
_UNITS = {"": 1, "b": 1, "k": 1e3, "kb": 1e3, "m": 1e6, "mb": 1e6, "g": 1e9, "gb": 1e9, "t": 1e12, "tb": 1e12,
          "kib": 2 ** 10, "mib": 2 ** 20, "gib": 2 ** 30, "tib": 2 ** 40}
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_size(text: str) -> int:
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", text)
    if not m or m.group(2).lower() not in _UNITS:
        raise UsageError(f"--max-size {text}: not a size; use e.g. 500MB, 2GB or 1.5GiB (a plain number: bytes)")
    return int(float(m.group(1)) * _UNITS[m.group(2).lower()])


def parse_age(text: str) -> float:
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*", text)
    if not m:
        raise UsageError(f"--older-than {text}: not a duration; use e.g. 30d, 12h, 2w (s, m, h, d or w)")
    return float(m.group(1)) * _SECONDS[m.group(2)]


def human(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n} B"


def ago(t: float, now: float) -> str:
    s = max(0.0, now - t)
    for unit, secs in (("d", 86400), ("h", 3600), ("m", 60)):
        if s >= secs:
            return f"{s / secs:.0f}{unit} ago"
    return "just now"


# ------------------------------------------------------------------------------------------------- choosing
@dataclass
class Plan:
    entries: list[tuple[Entry, str]]  # (entry, why)
    kept: list[tuple[Entry, str]]  # chosen but kept: (entry, why)
    locks: list[Lock]
    leftovers: list[Leftover]


def plan(found: Scan, *, unused: bool = False, older_than: float | None = None, max_size: int | None = None,
         clean: bool = False, now: float | None = None) -> Plan:
    now = time.time() if now is None else now
    chosen: dict[Path, tuple[Entry, str]] = {}
    for e in found.entries:
        if unused and not e.runs:
            chosen[e.path] = (e, "unused")
        elif older_than is not None and now - e.last_used > older_than:
            chosen[e.path] = (e, f"last used {ago(e.last_used, now)}")
    kept: list[tuple[Entry, str]] = []

    def protected(e: Entry) -> str | None:
        if found.running_since is not None and e.last_used >= found.running_since - 60:
            return "made or used since a run still running began (it tags what it uses when it ends)"
        if any(_lock_held(lk) for lk in e.locks):
            return "in use: its lock is held by a running process"
        return None

    for p, (e, why) in list(chosen.items()):
        if (reason := protected(e)) is not None:
            kept.append((e, reason))
            del chosen[p]
    if max_size is not None:
        total = sum(e.bytes for e in found.entries if e.path not in chosen)
        for e in sorted(found.entries, key=lambda e: e.last_used):  # least recently used first
            if total <= max_size:
                break
            if e.path in chosen:
                continue
            if (reason := protected(e)) is not None:
                kept.append((e, reason))
                continue
            chosen[e.path] = (e, f"over --max-size; last used {ago(e.last_used, now)}")
            total -= e.bytes
    locks, leftovers = [], []
    if clean:
        gone = set(chosen)
        own = {lk for e, _ in chosen.values() for lk in e.locks}  # go with their entries
        locks = [lk for lk in found.locks if not lk.held and lk.path not in own
                 and not any(p in lk.path.parents for p in gone)]
        leftovers = [x for x in [*found.set_asides, *found.temporaries] if not any(p in x.path.parents for p in gone)]
    return Plan(list(chosen.values()), kept, locks, leftovers)


# -------------------------------------------------------------------------------------------------- acting
def remove_entry(e: Entry) -> bool:
    """Remove ``e`` while holding its locks (taken without waiting); False (nothing removed) when a live
    process holds one. Its lock files go with it."""
    fds: list[tuple[Path, int]] = []
    try:
        for i, lk in enumerate(e.locks):
            fd = locks.try_lock(lk, create=i == 0)  # the entry's own lock, made if missing: no maker starts meanwhile
            if fd is None:
                if i == 0 or lk.exists():
                    return False
                continue
            fds.append((lk, fd))
        shutil.rmtree(e.path, ignore_errors=True)
        return not e.path.exists()
    finally:
        for lk, fd in fds:
            locks.release(lk, fd)


def remove_lock(lk: Lock) -> bool:
    fd = locks.try_lock(lk.path, create=False)
    if fd is None:
        return not lk.path.exists()
    locks.release(lk.path, fd)
    return True


def remove_unheld_locks(root: str | Path) -> int:
    """Remove every lock file under the store ``root`` that no process holds (taken without waiting, unlinked
    while held: see this module's notes); returns how many (``--clean``)."""
    n = 0
    for dirpath, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if not (CORRUPT.search(d) or TMP.search(d))]
        for f in files:
            if f.endswith(".lock"):
                n += remove_lock(Lock(Path(dirpath) / f, False)) and not (Path(dirpath) / f).exists()
    return n


def remove_leftover(x: Leftover) -> bool:
    if x.path.is_dir() and not x.path.is_symlink():
        shutil.rmtree(x.path, ignore_errors=True)
    else:
        x.path.unlink(missing_ok=True)
    return not x.path.exists()


# ------------------------------------------------------------------------------------------------ printing
def print_entries(found: Scan, now: float, console=None) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=escape(f"store {found.root}"), title_justify="left")
    for col in ("kind", "name", "size", "made", "last used", "runs"):
        table.add_column(col, justify="right" if col == "size" else "left")
    for e in sorted(found.entries, key=lambda e: (e.kind, -e.last_used)):
        if not found.runs_known:
            runs = "?"
        elif not e.runs:
            runs = "unused"
        else:
            ids = sorted(e.runs.values(), key=lambda r: -r.start)
            runs = f"{len(ids)}: " + ", ".join(r.run_id[:8] for r in ids[:3]) + (", ..." if len(ids) > 3 else "")
        table.add_row(*map(escape, (e.kind, e.name, human(e.bytes), ago(e.created, now),
                                    ago(e.last_used, now) if found.runs_known else "?", runs)))
    (console or Console(width=None if sys.stdout.isatty() else 160)).print(table)


def _plural(n: int, word: str, plural: str | None = None) -> str:
    return f"{n} {word if n == 1 else plural or word + 's'}"


def print_totals(found: Scan) -> None:
    kinds: dict[str, list[Entry]] = {}
    for e in found.entries:
        kinds.setdefault(e.kind, []).append(e)
    per = "; ".join(f"{k} {len(v)}, {human(sum(e.bytes for e in v))}" for k, v in sorted(kinds.items()))
    print(f"{_plural(len(found.entries), 'entry', 'entries')}, "
          f"{human(sum(e.bytes for e in found.entries))}" + (f" ({per})" if per else ""))
    unused = [e for e in found.entries if not e.runs]
    if found.runs_known:
        print(f"unused (no run names them): {len(unused)}, {human(sum(e.bytes for e in unused))}")
    held = sum(lk.held for lk in found.locks)
    print(f"{_plural(len(found.locks), 'lock file')} ({held} held by a running process)")
    print(f"{_plural(len(found.set_asides), 'set-aside')} (.corrupt-*), "
          f"{human(sum(x.bytes for x in found.set_asides))}"
          + "".join(f"\n  {x.path.relative_to(found.root)}  {human(x.bytes)}" for x in found.set_asides))
    if found.temporaries:
        print(f"{_plural(len(found.temporaries), 'leftover temporary', 'leftover temporaries')}, "
              f"{human(sum(x.bytes for x in found.temporaries))}")
    if found.failures:
        print(f"{_plural(len(found.failures), 'remembered failure')} (made again only once its file is deleted)"
              + "".join(f"\n  {x.path.relative_to(found.root)}  {x.what[:200]}" for x in found.failures))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m edgebench.store", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--store-dir", "--cache-dir", dest="store_dir", default="results/cache",  # --cache-dir: old name
                    help="the store (default: results/cache, where python -m edgebench keeps it: paths.store_dir)")
    ap.add_argument("--tracking-uri", default=os.environ.get("MLFLOW_TRACKING_URI", "sqlite:///results/mlflow.db"),
                    help="MLflow store whose runs use the entries (default: $MLFLOW_TRACKING_URI or "
                         "sqlite:///results/mlflow.db)")
    ap.add_argument("--unused", action="store_true", help="remove entries that no run uses")
    ap.add_argument("--older-than", metavar="AGE", help="remove entries not used for AGE (e.g. 30d, 12h, 2w)")
    ap.add_argument("--max-size", metavar="SIZE",
                    help="remove the least recently used entries until the rest fit in SIZE (e.g. 2GB, 500MB)")
    ap.add_argument("--clean", action="store_true",
                    help="remove lock files no process holds, .corrupt-* set-asides and dead processes' temporaries")
    ap.add_argument("--yes", "--delete", dest="yes", action="store_true",
                    help="remove (without it: print what would be removed and the bytes freed)")
    args = ap.parse_args(argv)
    if any(a == "--cache-dir" or a.startswith("--cache-dir=") for a in (sys.argv[1:] if argv is None else argv)):
        print("edgebench.store: --cache-dir is deprecated: use --store-dir", file=sys.stderr)
    try:
        run(args)
    except UsageError as e:
        print(f"{ERROR}{e}", file=sys.stderr)
        raise SystemExit(2) from None


def run(args: argparse.Namespace) -> None:
    older = parse_age(args.older_than) if args.older_than is not None else None
    budget = parse_size(args.max_size) if args.max_size is not None else None
    root = Path(args.store_dir)
    if not root.is_dir():
        raise UsageError(f"no store at {root}: run from the project folder (python -m edgebench keeps it in "
                         "results/cache) or pass --store-dir (paths.store_dir)")
    removing = args.unused or older is not None or budget is not None
    uri: str | None = args.tracking_uri
    from edgebench.config import ConfigError
    from edgebench.tracking import check_store

    try:
        check_store(uri, must_exist=True, hint="pass --tracking-uri (the store the runs were logged to)")
    except ConfigError as e:
        if removing:
            raise UsageError(f"{e}; removing entries needs the runs that use them") from None
        print(f"note: {e}; runs not looked up")
        uri = None
    now = time.time()
    found = scan(root, uri)
    todo = plan(found, unused=args.unused, older_than=older, max_size=budget, clean=args.clean, now=now)
    if not (removing or args.clean):
        print_entries(found, now)
        print_totals(found)
        print("nothing removed; --unused, --older-than AGE, --max-size SIZE or --clean choose what to remove "
              "(a dry run until --yes)")
        return
    verb = "removed" if args.yes else "would remove"
    freed, counts = 0, {"entries": 0, "locks": 0, "leftovers": 0}
    for e, why in sorted(todo.entries, key=lambda t: t[0].last_used):
        ok = remove_entry(e) if args.yes else True
        rel = e.path.relative_to(root)
        if not ok:
            print(f"kept {rel}: in use: its lock is held by a running process")
            continue
        print(f"{verb} {rel}  {human(e.bytes)}  ({why})")
        freed += e.bytes
        counts["entries"] += 1
    for e, why in todo.kept:
        print(f"kept {e.path.relative_to(root)}: {why}")
    for lk in todo.locks:
        if args.yes and not remove_lock(lk):
            print(f"kept {lk.path.relative_to(root)}: in use: held by a running process")
            continue
        counts["locks"] += 1
    if todo.locks or args.clean:
        print(f"{verb} {_plural(counts['locks'], 'lock file')} no process holds"
              + (f" (kept {sum(lk.held for lk in found.locks)} held by a running process: in use)"
                 if any(lk.held for lk in found.locks) else ""))
    for x in todo.leftovers:
        if args.yes and not remove_leftover(x):
            continue
        print(f"{verb} {x.path.relative_to(root)}  {human(x.bytes)}  ({x.what})")
        freed += x.bytes
        counts["leftovers"] += 1
    what = (f"{_plural(counts['entries'], 'entry', 'entries')}, {_plural(counts['locks'], 'lock file')}, "
            f"{_plural(counts['leftovers'], 'set-aside or temporary', 'set-asides and temporaries')}")
    if args.yes:
        print(f"freed {human(freed)} ({what})")
    else:
        print(f"would free {human(freed)} ({what}); pass --yes to remove")
