"""From raw records to tidy pandas frames, statistics, the comparison table and a verdict."""
