"""Layer 7: from rows to findings: matched cells and statistics, aggregation, roofline, long context,
result bundles of several hosts, claims."""
