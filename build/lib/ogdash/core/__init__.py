"""The base layer every other part uses: the one error type, the disk cache, input checks, progress and timing."""
