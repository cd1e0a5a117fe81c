"""pyxl: the xl command line (Xen 4.10) for a pyxen host; see main.py."""
