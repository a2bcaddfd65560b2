"""The commands that read a run directory as data: status, report, export and the rest."""
