"""What a person reads: `show`'s renderings, the live view of a run, the HTML report and its
tables and figures, and the one summary of a capsule's results they all share."""
