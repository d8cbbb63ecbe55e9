"""Law-enforcement query API over the Redis serving store."""
