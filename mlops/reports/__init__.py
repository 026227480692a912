"""Results -> text, JSON, Markdown (PR comments), GitHub annotations, HTML."""
