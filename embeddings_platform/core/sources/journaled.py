"""A watched folder as it is now, from a generation of the watcher's journal (journal.py): the
walk's listing with the journaled paths taken as they are now. Each journaled path is stat'ed
again (a file), walked (a folder created, moved in or replaced) or dropped (gone), with
everything the walk found below a folder that went; links are always stat'ed again (a link's
target can change without an event on the link).

- `listing`: the whole folder, what a walk would list (compared with the last snapshot entry by
  entry: O(files) in Arrow, no stat but the changed paths');
- `changes`: only the entries that may differ from the walk. A snapshot built on this same
  generation recorded the walk's stamp for every other entry, so these are all a step compares
  (folder.py): O(changed paths). None when a folder of the walk went (what it held is only
  found in the whole listing).

Both give None when a walk is cheaper (more changed than MIN_TRUSTED_PATHS or a quarter of the
listing) or the walk could not list a folder.
"""

from __future__ import annotations

import os
import stat

import pyarrow as pa
import pyarrow.compute as pc

from .journal import Generation
from .listing import FolderListing, clean_id, list_folder, stat_entries

MIN_TRUSTED_PATHS = 1000  # up to this many changed paths (or a quarter of the listing) are stat'ed
MAX_FOLDER_CHANGES = 64  # more folders created or deleted than this: walk instead
_HIDDEN = r"(^|/)\."


def listing(root: str, generation: Generation, include_hidden: bool) -> FolderListing | None:
    """The folder as a walk would list it now."""
    sorted_out = _classify(root, generation)
    if sorted_out is None:
        return None
    rels, entries, folders, gone = sorted_out
    table = generation.table
    keys = table["key"]
    dropped = pc.is_in(keys, value_set=pa.array([clean_id(r) for r in rels], pa.string()))
    listed = _folders_of(keys) if folders or gone else set()
    prefixes = _outermost([clean_id(r) for r in folders + gone if clean_id(r) in listed])
    if len(prefixes) > MAX_FOLDER_CHANGES:
        return None
    for prefix in prefixes:
        dropped = pc.or_(dropped, pc.starts_with(keys, prefix + "/"))
    now = _now(root, entries, folders)
    if now is None:
        return None
    return _visible(root, pa.concat_tables([table.filter(pc.invert(dropped)), now]), include_hidden)


def changes(
    root: str, generation: Generation, include_hidden: bool
) -> tuple[FolderListing, set[str]] | None:
    """The entries that may differ from the walk, as they are now, and the doc ids that are no
    entry any more (gone, or a folder now)."""
    sorted_out = _classify(root, generation)
    if sorted_out is None:
        return None
    _, entries, folders, gone = sorted_out
    if folders or gone:
        listed = _folders_of(generation.table["key"])
        if any(clean_id(r) in listed for r in folders + gone):
            return None  # a folder of the walk went or was replaced
    now = _now(root, entries, folders)
    if now is None:
        return None
    ended = {clean_id(r) for r in gone + folders}
    if not include_hidden:
        ended = {key for key in ended if not any(p.startswith(".") for p in key.split("/"))}
    return _visible(root, now, include_hidden), ended


def _classify(root: str, generation: Generation):
    """(every path, entries, folders, gone) of the journaled paths and the links, by what each
    is now; None when a walk is cheaper or the walk could not list a folder."""
    table = generation.table
    if pc.any(pc.is_valid(table["problem"])).as_py():
        return None
    links = table.filter(pc.fill_null(table["link"], False))
    rels = set(generation.rels) | {
        os.fsdecode(raw) if raw is not None else key
        for key, raw in zip(links["key"].to_pylist(), links["raw"].to_pylist())
    }
    if len(rels) > max(MIN_TRUSTED_PATHS, table.num_rows // 4):
        return None
    entries, folders, gone = [], [], []
    for rel in rels:
        try:
            mode = os.lstat(os.path.join(root, rel)).st_mode
        except (FileNotFoundError, NotADirectoryError):
            gone.append(rel)
            continue
        except OSError:
            return None
        (folders if stat.S_ISDIR(mode) else entries).append(rel)
    return rels, entries, folders, gone


def _now(root: str, entries: list[str], folders: list[str]) -> pa.Table | None:
    """LISTING rows of the files as they are now and of the folders, walked as a whole."""
    folders = _outermost(folders)
    inside = set(folders)
    parts = [stat_entries(root, [r for r in entries if not _below(r, inside)])]
    for folder in folders:  # created, moved in, or replaced
        walked, unreadable = list_folder(root, True, folder)
        if unreadable:
            return None
        parts.append(walked)
    return pa.concat_tables(parts)


def _visible(root: str, table: pa.Table, include_hidden: bool) -> FolderListing:
    if not include_hidden:
        table = table.filter(pc.invert(pc.match_substring_regex(table["key"], _HIDDEN)))
    return FolderListing(root, table)


def _below(rel: str, folders: set[str]) -> bool:
    parts = rel.split("/")
    return any("/".join(parts[:i]) in folders for i in range(1, len(parts)))


def _outermost(rels: list[str]) -> list[str]:
    """The paths not below another one of them."""
    chosen = set(rels)
    return sorted(r for r in chosen if not _below(r, chosen))


def _folders_of(keys: pa.ChunkedArray) -> set[str]:
    """Every folder the listing holds something below (a deleted file holds nothing)."""
    parents = pc.unique(pc.replace_substring_regex(keys, r"(^|/)[^/]*$", "")).to_pylist()
    folders: set[str] = set()
    for parent in parents:
        while parent and parent not in folders:
            folders.add(parent)
            parent = parent.rpartition("/")[0]
    return folders
