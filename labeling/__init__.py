"""Labeling: batches of mined scenes to annotation vendors, labels back. Issue 4."""
