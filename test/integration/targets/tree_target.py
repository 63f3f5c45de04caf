"""A known call tree for the interactive `memray tree` test (test_tree_view.py). At the
high-water mark: 4 MB in one allocation through main > chain1 > chain2 > chain3 > leaf_big, 3 MB
allocated by tree_helper.py while it is imported (under the import system), 2 MB in two
allocations through main > small, and 0.1 MB through main > tiny, the location that `-b 3` leaves
below the threshold. Lines the test looks for carry a MARK comment."""
import os
import sys

keep = []


def leaf_big():
    keep.append(bytearray(4_000_000))  # MARK: leaf_big


def chain3():
    leaf_big()


def chain2():
    chain3()


def chain1():
    chain2()


def small():
    keep.append(bytearray(1_000_000))  # MARK: small


def tiny():
    keep.append(bytearray(100_000))  # MARK: tiny


def main():
    chain1()  # MARK: main-chain
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import tree_helper  # MARK: main-import
    keep.append(tree_helper.DATA)
    for _ in range(2):
        small()  # MARK: main-small
    tiny()


main()
