"""Many studies at once: ``spineassist batch``.

- :mod:`.jobs` — the studies of a batch, their output folders, and the mark of a complete study;
- :mod:`.worker` — one worker: models loaded once, fetch, assess, store, mark;
- :mod:`.engines` — where workers run: local processes or Ray actors;
- :mod:`.scheduler` — hands studies to workers, retries a lost worker's study, keeps the log;
- :mod:`.progress` — the bar (rate, time left) or JSON lines;
- :mod:`.summary` — every level of every study in one table (CSV, Parquet), and the failures.
"""
