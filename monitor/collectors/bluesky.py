"""Bluesky collector (Jetstream firehose + searchPosts backfill).

Owned by the Bluesky helper; work in progress.
"""
