"""Offline jobs, not the serving path: BEIR loading, hard-negative mining through the
service, and cross-encoder training (`hsearch train-reranker`)."""
