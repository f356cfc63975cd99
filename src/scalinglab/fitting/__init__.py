"""fitting package."""
