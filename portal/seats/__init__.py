"""seats feature package."""
