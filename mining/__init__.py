"""Mining: scene search over the lake (SQL with DuckDB, similarity with FAISS). Issue 3."""
