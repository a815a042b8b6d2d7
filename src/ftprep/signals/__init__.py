"""Per-example derived values (token counts, embeddings…), cached by content hash."""
