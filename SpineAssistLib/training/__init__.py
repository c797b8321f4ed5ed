"""Training-side code that no inference path imports: real-data importers and real-data evaluation.

(The phantom training sets, training runs and phantom evaluation still live in ``models/``; the
layout issue moves them here.)
"""
