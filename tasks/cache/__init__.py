"""Step caching: the Prefect cache policy, fingerprints, the index beside the cache, lock files."""
