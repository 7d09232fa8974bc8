"""The report: how faithfully each metric follows people's verdicts.

- ``inputs``: one dataset's metrics, annotations and SemSim scores as image and set tables;
- ``correlate``: scipy's Spearman / Kendall tau-b / Pearson, vectorised bootstrap CIs, NaN reasons;
- ``orientation``: expected signs, so oriented values read "higher = more faithful";
- ``contradictions``: pairwise agreement between metrics and the discordant-pair share;
- ``study``: every correlation as one long table, and the DVC metrics summary;
- ``render`` / ``page`` / ``figures``: Markdown, DVC plot CSVs, the self-contained HTML page;
- ``report``: params -> settings -> every file; ``alpha_sweep``: rho / tau against alpha.
"""
