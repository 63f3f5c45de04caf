"""Imported by tree_target.py: allocates 3 MB while the import system runs it."""
DATA = bytearray(3_000_000)  # MARK: helper
