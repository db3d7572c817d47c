"""Seeded demo data set of an AI API company: price book, catalog CSVs and landing event files."""
