"""Annotation: tasks for annotators, the web app, importers of their answers, aggregation."""
