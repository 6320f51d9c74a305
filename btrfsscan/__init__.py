"""btrfsscan: how much page cache would a shared-extent cache save on this btrfs?"""

__version__ = "0.1.0"
