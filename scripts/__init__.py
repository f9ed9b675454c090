"""Developer tools that run the product's real processes (not part of the deployed app)."""
