"""`make bench`: see run.py."""
