"""paraphrase."""
