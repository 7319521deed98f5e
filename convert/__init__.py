"""Converters that rewrite datasets, one shard at a time, into streaming stores."""
