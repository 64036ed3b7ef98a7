"""support feature package."""
