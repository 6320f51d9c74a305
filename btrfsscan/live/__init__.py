"""The live data source: what a mounted filesystem's page cache holds now (``btrfsscan live``)."""
