"""End-to-end tests: the real CLI around the real fixture app (see context.py)."""
