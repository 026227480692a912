"""Reading model artifacts: detect their format from the bytes, extract what they carry, load them to score."""
