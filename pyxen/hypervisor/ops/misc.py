"""Hypercalls a PVH/HVM guest may issue that pyxen answers with Xen's refusals."""

from __future__ import annotations

from ...abi.constants import Errno, Hypercall
from ..errors import HypercallError


def do_platform_op(caller, *_):
    # Hardware-domain only; no domain here drives physical hardware.
    raise HypercallError(Errno.EPERM)


def do_xsm_op(caller, *_):
    # Xen built without FLASK answers every XSM operation this way.
    raise HypercallError(Errno.ENOSYS)


def register(hv) -> None:
    hv.hypercalls.register(Hypercall.platform_op, do_platform_op)
    hv.hypercalls.register(Hypercall.xsm_op, do_xsm_op)
