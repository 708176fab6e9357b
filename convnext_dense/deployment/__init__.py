"""Exporting the models to other frameworks, and importing them back."""
