"""Optivex package."""
