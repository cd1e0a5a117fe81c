"""The xenstore tree: nodes, permissions, quotas and transactions (C xenstored 4.10 rules).

Nodes are immutable once stored: every change builds a new `Node` and puts it
through a view. The direct view writes the main tree and stamps the node with
the next global generation; a `Transaction` keeps its changes in an overlay
and records the generation of every node it read or wrote (absent: -1). At
commit, any recorded node whose generation moved means EAGAIN, which is how
xenstored 4.10 detects conflicts.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass

from ...abi.constants import (
    XENSTORE_ABS_PATH_MAX,
    XENSTORED_QUOTA_ENTRY_SIZE,
    XENSTORED_QUOTA_NODES,
    XENSTORED_QUOTA_TRANSACTIONS,
    XENSTORED_QUOTA_WATCHES,
    XS_PERM_NONE,
    XS_PERM_OWNER,
    XS_PERM_READ,
    XS_PERM_WRITE,
)
from .wire import XsError

READ, WRITE, OWNER = XS_PERM_READ, XS_PERM_WRITE, XS_PERM_OWNER
ALL = READ | WRITE | OWNER
NO_GENERATION = -1

Perms = tuple[tuple[int, int], ...]      # ((domid, bits), ...); [0] = owner and default
_LETTERS = {"n": XS_PERM_NONE, "r": READ, "w": WRITE, "b": READ | WRITE}
_LETTER_OF = {bits: letter for letter, bits in _LETTERS.items()}
_VALID_CHARS = re.compile(r"[A-Za-z0-9\-/_@]*")
# A node record's size as C xenstored stores it: header (u64 generation, u32
# num_perms, datalen, childlen, padded to 24), 8 bytes per permission, value, children.
RECORD_HEADER_SIZE = 24
PERM_RECORD_SIZE = 8


@dataclass(frozen=True)
class Quotas:
    """Limits for unprivileged domains (Dom0 is exempt). The first four are C
    xenstored 4.10's defaults; 4.10 has no limit on queued output, the last two
    keep a guest that never reads its ring from pinning unbounded memory."""

    nodes: int = XENSTORED_QUOTA_NODES                 # nodes a domain may own
    entry_size: int = XENSTORED_QUOTA_ENTRY_SIZE       # bytes of one node record
    watches: int = XENSTORED_QUOTA_WATCHES             # watches per domain
    transactions: int = XENSTORED_QUOTA_TRANSACTIONS   # open per connection
    outstanding_replies: int = 20     # unsent replies before a guest's next request waits
    event_backlog_bytes: int = 65536  # queued watch events beyond this are dropped


def perms_to_strings(perms: Perms) -> list[str]:
    return [f"{_LETTER_OF[bits & (READ | WRITE)]}{domid}" for domid, bits in perms]


def _c_strtol(text: str) -> int:
    """strtol(text, &end, 0) demanding that all of `text` is the number."""
    body = text[1:] if text[:1] in "+-" else text
    if body[:2].lower() == "0x":
        value = int(body[2:], 16)
    elif len(body) > 1 and body[0] == "0":
        value = int(body[1:], 8)
    else:
        if not body.isdigit():
            raise ValueError(text)
        value = int(body)
    return -value if text[:1] == "-" else value


def parse_perms(items: list[bytes]) -> Perms:
    """["r0", "b5", ...] -> perms; EINVAL for a bad letter or number."""
    out = []
    for raw in items:
        text = raw.decode("latin-1")
        bits = _LETTERS.get(text[:1])
        try:
            if bits is None or len(text) < 2:
                raise ValueError(text)
            domid = _c_strtol(text[1:])
        except ValueError:
            raise XsError("EINVAL", f"bad permission {text!r}") from None
        out.append((domid & 0xFFFFFFFF, bits))
    return tuple(out)


def perm_for(conn, perms: Perms) -> int:
    """What `conn` may do to a node with `perms`: privileged callers, the owner and a
    domain targeting the owner get everything; else the first ACL entry (after the
    owner's) naming the caller or its target; else the owner entry's letter."""
    if conn.privileged:
        return ALL
    domid, target = conn.domid, conn.target
    owner = perms[0][0]
    if owner == domid or (target is not None and owner == target):
        return ALL
    for pid, bits in perms[1:]:
        if pid == domid or (target is not None and pid == target):
            return bits
    return perms[0][1]


def valid_path(path: str) -> bool:
    return (path.startswith("/") and (path == "/" or not path.endswith("/"))
            and "//" not in path and len(path) <= XENSTORE_ABS_PATH_MAX
            and _VALID_CHARS.fullmatch(path) is not None)


def parent_of(path: str) -> str:
    i = path.rfind("/")
    return "/" if i <= 0 else path[:i]


def base_of(path: str) -> str:
    return path[path.rfind("/") + 1:]


def child_path(path: str, name: str) -> str:
    return "/" + name if path == "/" else f"{path}/{name}"


class Node:
    __slots__ = ("value", "perms", "children", "generation")

    def __init__(self, value: bytes, perms: Perms, children: dict[str, None] | None = None,
                 generation: int = NO_GENERATION):
        self.value = value
        self.perms = perms
        self.children = children if children is not None else {}   # ordered names
        self.generation = generation

    def record_size(self) -> int:
        return (RECORD_HEADER_SIZE + PERM_RECORD_SIZE * len(self.perms) + len(self.value)
                + sum(len(name) + 1 for name in self.children))

    def children_blob(self) -> bytes:
        return b"".join(name.encode() + b"\0" for name in self.children)


class DirectView:
    """Operations on the main tree."""

    __slots__ = ("store",)
    in_transaction = False

    def __init__(self, store: Store):
        self.store = store

    def get(self, path: str) -> Node | None:
        return self.store.nodes.get(path)

    def put(self, path: str, node: Node) -> None:
        store = self.store
        store.generation += 1
        node.generation = store.generation
        store.nodes[path] = node

    def delete(self, path: str) -> None:
        self.store.nodes.pop(path, None)

    def owned(self, domid: int) -> int:
        return self.store.owned.get(domid, 0)

    def count(self, domid: int, delta: int) -> None:
        self.store.owned[domid] += delta

    def changed(self, change) -> None:
        """A change to announce (watches fire now)."""
        self.store.pending_changes.append(change)


class Transaction:
    """A connection's transaction: an overlay on the tree plus what it accessed."""

    in_transaction = True

    def __init__(self, store: Store, tx_id: int):
        self.store = store
        self.id = tx_id
        self.start_generation = store.generation
        self.overlay: dict[str, Node | None] = {}
        self.accessed: dict[str, int] = {}
        self.owned_delta: defaultdict[int, int] = defaultdict(int)
        self.changes: list = []           # watch firings held until commit

    def _record(self, path: str) -> Node | None:
        node = self.store.nodes.get(path)
        if path not in self.accessed:
            self.accessed[path] = node.generation if node is not None else NO_GENERATION
        return node

    def get(self, path: str) -> Node | None:
        if path in self.overlay:
            return self.overlay[path]
        return self._record(path)

    def put(self, path: str, node: Node) -> None:
        self._record(path)
        node.generation = NO_GENERATION
        self.overlay[path] = node

    def delete(self, path: str) -> None:
        self._record(path)
        self.overlay[path] = None

    def owned(self, domid: int) -> int:
        return self.store.owned.get(domid, 0) + self.owned_delta.get(domid, 0)

    def count(self, domid: int, delta: int) -> None:
        self.owned_delta[domid] += delta

    def changed(self, change) -> None:
        self.changes.append(change)

    def commit(self) -> list:
        """Apply the overlay, or EAGAIN if a node it accessed changed meanwhile."""
        store = self.store
        nodes = store.nodes
        for path, generation in self.accessed.items():
            node = nodes.get(path)
            if (node.generation if node is not None else NO_GENERATION) != generation:
                raise XsError("EAGAIN", f"{path} changed")
        for path, node in self.overlay.items():
            if node is None:
                nodes.pop(path, None)
            else:
                store.generation += 1
                node.generation = store.generation
                nodes[path] = node
        for domid, delta in self.owned_delta.items():
            store.owned[domid] += delta
        return self.changes


class Change:
    """One announced modification: `perms` decide who may see it; `old_perms` too for
    a permission change; `removed` (path -> perms) for a recursive removal."""

    __slots__ = ("path", "perms", "old_perms", "removed")

    def __init__(self, path: str, perms: Perms, old_perms: Perms | None = None,
                 removed: dict[str, Perms] | None = None):
        self.path = path
        self.perms = perms
        self.old_perms = old_perms
        self.removed = removed


ROOT_PERMS: Perms = ((0, XS_PERM_NONE),)


class Store:
    def __init__(self, quotas: Quotas | None = None):
        self.quotas = quotas or Quotas()
        self.nodes: dict[str, Node] = {}
        self.generation = 0
        self.owned: defaultdict[int, int] = defaultdict(int)
        self.pending_changes: list[Change] = []
        self.direct = DirectView(self)
        # The tree xenstored starts with.
        for path, children in (("/", ["tool"]), ("/tool", ["xenstored"]),
                               ("/tool/xenstored", [])):
            self.direct.put(path, Node(b"", ROOT_PERMS, dict.fromkeys(children)))
            self.owned[0] += 1

    # -- lookups -----------------------------------------------------------------------
    def lookup(self, view, conn, path: str, perm: int, missing_ok: bool = False) -> Node | None:
        """The node at canonical `path` if `conn` has `perm` on it. A missing node is
        ENOENT (None with missing_ok) unless its nearest existing ancestor denies
        `perm` as well: then, as for a denied node, EACCES, so nothing leaks."""
        node = view.get(path)
        if node is not None:
            if perm_for(conn, node.perms) & perm == perm:
                return node
            error = "EACCES"
        else:
            error = "ENOENT"
        ancestor = path
        while ancestor != "/":
            ancestor = parent_of(ancestor)
            found = view.get(ancestor)
            if found is not None:
                break
        else:
            found = view.get("/")
        if not perm_for(conn, found.perms) & perm:
            error = "EACCES"
        if error == "ENOENT" and missing_ok:
            return None
        raise XsError(error, path)

    # -- modifications -------------------------------------------------------------------
    def _check_size(self, conn, node: Node) -> None:
        if not conn.privileged and node.record_size() >= self.quotas.entry_size:
            raise XsError("ENOSPC", "node record over quota")

    def create(self, view, conn, path: str, value: bytes) -> Node:
        """Create `path` and any missing ancestors (empty). New nodes inherit the
        permissions of their parent; an unprivileged creator becomes the owner."""
        missing = [path]
        top = parent_of(path)
        parent = view.get(top)
        while parent is None:
            missing.append(top)
            top = parent_of(top)
            parent = view.get(top)
        perms = parent.perms
        if not conn.privileged:
            perms = ((conn.domid, perms[0][1]),) + perms[1:]
            if view.owned(conn.domid) + len(missing) > self.quotas.nodes:
                raise XsError("ENOSPC", "node quota")
        new_parent = Node(parent.value, parent.perms,
                          {**parent.children, base_of(missing[-1]): None})
        built = []
        for i in range(len(missing) - 1, -1, -1):
            name = missing[i]
            if i:
                built.append((name, Node(b"", perms, {base_of(missing[i - 1]): None})))
            else:
                built.append((name, Node(value, perms)))
        self._check_size(conn, new_parent)
        for _, node in built:
            self._check_size(conn, node)
        view.put(top, new_parent)
        for name, node in built:
            view.put(name, node)
        view.count(perms[0][0], len(built))
        return built[-1][1]

    def set_value(self, view, conn, path: str, node: Node, value: bytes) -> Node:
        new = Node(value, node.perms, node.children)
        self._check_size(conn, new)
        view.put(path, new)
        return new

    def set_perms(self, view, conn, path: str, node: Node, perms: Perms) -> Node:
        new = Node(node.value, perms, node.children)
        self._check_size(conn, new)
        view.put(path, new)
        view.count(node.perms[0][0], -1)
        view.count(perms[0][0], 1)
        return new

    def remove(self, view, conn, path: str) -> dict[str, Perms]:
        """Remove `path` and its subtree; returns each removed node's permissions."""
        top = parent_of(path)
        parent = view.get(top)
        children = dict(parent.children)
        children.pop(base_of(path), None)
        new_parent = Node(parent.value, parent.perms, children)
        self._check_size(conn, new_parent)
        view.put(top, new_parent)
        removed: dict[str, Perms] = {}
        stack = [path]
        while stack:
            name = stack.pop()
            node = view.get(name)
            if node is None:
                continue
            removed[name] = node.perms
            view.count(node.perms[0][0], -1)
            view.delete(name)
            stack.extend(child_path(name, child) for child in node.children)
        return removed

    # -- consistency ---------------------------------------------------------------------
    def check(self) -> list[str]:
        """Problems in the tree (CONTROL check): children without nodes, orphans."""
        problems = []
        reachable = set()
        stack = ["/"]
        while stack:
            path = stack.pop()
            reachable.add(path)
            for child in self.nodes[path].children:
                name = child_path(path, child)
                if name in self.nodes:
                    stack.append(name)
                else:
                    problems.append(f"{path} lists missing child {child}")
        problems += [f"{path} is orphaned" for path in self.nodes if path not in reachable]
        return problems
