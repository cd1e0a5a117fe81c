"""pyxen: a Xen 4.10-compatible hypervisor in Python."""

__version__ = "0.1.0"
