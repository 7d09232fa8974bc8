"""Datasets: the five offline domains, the paper's five datasets, and their standard on-disk form.

``build.prepare(params, name)`` builds the dataset that ``params['prepare'][name]`` describes
and chooses its attack subset; ``standard.save``/``standard.load`` are the file contract that
every later stage reads. This file imports nothing, so a stage that only reads the standard
form does not load (or depend on) the downloaders and builders.
"""
