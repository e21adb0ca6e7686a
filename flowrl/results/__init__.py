"""Results: what a run's scores are and how runs are compared.

It owns the final-score rule and results.json's summary (`scores`), tables and plots over run
directories (`report`, `python -m flowrl.results.report`), the statistics they use (`stats`: IQM,
bootstrap intervals) and the papers' published numbers (`published`). It may import the base
modules (run_files: the formats it reads), flowrl.kit, flowrl.suites (task names, metrics) and
flowrl.registry (agents and their presets: the config a run would have had without overrides);
never the engine or the run.
"""
