"""qstash_local package."""
