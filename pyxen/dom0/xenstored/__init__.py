"""xenstored for pyxen: the store, its Unix socket and guest rings, and a client library.

Semantics follow C xenstored 4.10 (docs/misc/xenstore.txt, xs_wire.h); watch events
are filtered by read permission as xenstored does since XSA-115.
"""

from .client import WatchEvent, XsClient, XsTransaction
from .service import XenstoreService
from .store import Quotas
from .wire import XsError

__all__ = ["Quotas", "WatchEvent", "XenstoreService", "XsClient", "XsError", "XsTransaction"]
