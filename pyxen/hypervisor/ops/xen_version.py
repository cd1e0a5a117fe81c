"""xen_version (hypercall 17): version number, build strings, features."""

from __future__ import annotations

from ...abi import structs as S
from ...abi.constants import (
    XEN_VERSION_MAJOR,
    XEN_VERSION_MINOR,
    Errno,
    Hypercall,
    XenFeat,
    XenVer,
)
from ..errors import HypercallError
from .common import c_string

HYPERVISOR_VIRT_START = 0xFFFF_8000_0000_0000      # x86-64 guests
HYPERVISOR_COMPAT_VIRT_START = 0xF580_0000         # 32-bit guests
DENIED = "<denied>"                                # what unprivileged callers get for some info


def features_for(d) -> int:
    """XENVER_get_features submap 0 for domain `d` (Xen 4.10 rules for x86)."""
    bits = 1 << XenFeat.memory_op_vnode_supported
    if d.is_hvm:
        # Translated (HVM/PVH) guests: page tables are theirs, the physmap is translated.
        bits |= (1 << XenFeat.writable_page_tables) | (1 << XenFeat.auto_translated_physmap)
        bits |= (1 << XenFeat.hvm_callback_vector) | (1 << XenFeat.hvm_safe_pvclock)
    if d.is_privileged:
        bits |= 1 << XenFeat.dom0
    return bits


def do_xen_version(caller, cmd, arg, *_):
    cmd &= 0xFFFF_FFFF
    d = caller.domain
    hv = d.hv
    if cmd == XenVer.version:
        return (XEN_VERSION_MAJOR << 16) | XEN_VERSION_MINOR
    if cmd == XenVer.extraversion:
        caller.copy_to_guest(arg, c_string(hv.version_extra, S.XEN_EXTRAVERSION.size))
        return 0
    if cmd == XenVer.compile_info:
        caller.copy_to_guest(arg, S.XEN_COMPILE_INFO.pack(
            compiler=c_string(hv.compiler, 64), compile_by=c_string(hv.compile_by, 16),
            compile_domain=c_string(hv.compile_domain, 32),
            compile_date=c_string(hv.compile_date, 32)))
        return 0
    if cmd == XenVer.capabilities:
        caller.copy_to_guest(arg, c_string(hv.capabilities, S.XEN_CAPABILITIES_INFO.size))
        return 0
    if cmd == XenVer.changeset:
        caller.copy_to_guest(arg, c_string(hv.changeset, S.XEN_CHANGESET_INFO.size))
        return 0
    if cmd == XenVer.platform_parameters:
        if caller.compat:
            caller.copy_to_guest(arg, S.XEN_PLATFORM_PARAMETERS_COMPAT.pack(
                virt_start=HYPERVISOR_COMPAT_VIRT_START))
        else:
            caller.copy_to_guest(arg, S.XEN_PLATFORM_PARAMETERS.pack(
                virt_start=HYPERVISOR_VIRT_START))
        return 0
    if cmd == XenVer.get_features:
        fi = S.XEN_FEATURE_INFO.unpack(caller.copy_from_guest(arg, S.XEN_FEATURE_INFO.size))
        if fi.submap_idx != 0:
            raise HypercallError(Errno.EINVAL)
        caller.copy_to_guest(arg, S.XEN_FEATURE_INFO.pack(submap_idx=0,
                                                          submap=features_for(d)))
        return 0
    if cmd == XenVer.pagesize:
        if arg:
            raise HypercallError(Errno.EINVAL)
        return 4096
    if cmd == XenVer.guest_handle:
        caller.copy_to_guest(arg, d.handle)
        return 0
    if cmd == XenVer.commandline:
        if d.is_privileged:
            caller.copy_to_guest(arg, c_string(hv.cmdline, S.XEN_COMMANDLINE.size))
        else:
            caller.copy_to_guest(arg, DENIED.encode() + b"\0")  # only the string is copied
        return 0
    if cmd == XenVer.build_id:
        if not d.is_privileged:
            raise HypercallError(Errno.EPERM)
        raise HypercallError(Errno.ENODATA)    # pyxen is not built with a GNU build id
    raise HypercallError(Errno.ENOSYS)


def register(hv) -> None:
    hv.hypercalls.register(Hypercall.xen_version, do_xen_version)
