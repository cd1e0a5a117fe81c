"""Watches: registration, quotas and event delivery filtered by read permission.

A change at path P fires every watch on P or an ancestor of P (event path P).
A recursive removal of P also fires watches below P, with their own path as
the event path. A connection only receives an event if it may read the node
(with the node's permissions before removal, and before or after a permission
change): xenstored's rule since XSA-115. @introduceDomain/@releaseDomain go to
privileged connections and to domains their special ACL lets read.
"""

from __future__ import annotations

from collections import defaultdict

from .store import READ, ROOT_PERMS, Change, Perms, parent_of, perm_for

SPECIAL_WATCHES = ("@introduceDomain", "@releaseDomain")


class Watch:
    __slots__ = ("conn", "path", "token", "prefix")

    def __init__(self, conn, path: str, token: bytes, prefix: str | None):
        self.conn = conn
        self.path = path          # canonical (absolute, or @special)
        self.token = token
        self.prefix = prefix      # the domain path a relative watch was given against


class WatchTable:
    def __init__(self):
        self.by_path: dict[str, list[Watch]] = {}
        self.per_domain: defaultdict[int, int] = defaultdict(int)
        self.special_perms: dict[str, Perms] = dict.fromkeys(SPECIAL_WATCHES, ROOT_PERMS)

    def add(self, watch: Watch) -> None:
        self.by_path.setdefault(watch.path, []).append(watch)
        watch.conn.watches[(watch.path, watch.token)] = watch
        self.per_domain[watch.conn.domid] += 1

    def remove(self, watch: Watch) -> None:
        watches = self.by_path.get(watch.path)
        if watches is not None and watch in watches:
            watches.remove(watch)
            if not watches:
                del self.by_path[watch.path]
        watch.conn.watches.pop((watch.path, watch.token), None)
        self.per_domain[watch.conn.domid] -= 1

    def remove_all(self, conn) -> None:
        for watch in list(conn.watches.values()):
            self.remove(watch)

    # -- firing -------------------------------------------------------------------------
    @staticmethod
    def event_payload(watch: Watch, path: str) -> bytes:
        if watch.prefix is not None and path.startswith(watch.prefix):
            path = path[len(watch.prefix):].lstrip("/")
        return path.encode() + b"\0" + watch.token + b"\0"

    def _deliver(self, watch: Watch, path: str, perms: Perms, old_perms: Perms | None) -> None:
        conn = watch.conn
        if not (perm_for(conn, perms) & READ
                or (old_perms is not None and perm_for(conn, old_perms) & READ)):
            return
        conn.push_event(self.event_payload(watch, path))

    def fire(self, change: Change) -> None:
        if not self.by_path:
            return
        path = change.path
        if change.removed is not None:
            perms = change.removed[path]
            old = None
        else:
            perms, old = change.perms, change.old_perms
        here = path
        while True:
            for watch in self.by_path.get(here, ()):
                self._deliver(watch, path, perms, old)
            if here == "/":
                break
            here = parent_of(here)
        if change.removed is not None:
            below = "/" if path == "/" else path + "/"
            for wpath, watches in list(self.by_path.items()):
                if wpath.startswith(below) and wpath != path:
                    nearest = wpath
                    while nearest not in change.removed:
                        nearest = parent_of(nearest)
                    for watch in list(watches):
                        self._deliver(watch, wpath, change.removed[nearest], None)

    def fire_special(self, name: str) -> None:
        perms = self.special_perms[name]
        for watch in list(self.by_path.get(name, ())):
            if perm_for(watch.conn, perms) & READ:
                watch.conn.push_event(self.event_payload(watch, name))
