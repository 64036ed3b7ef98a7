"""payments feature package."""
