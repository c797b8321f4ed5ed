"""From loaded image stacks to an Assessment: the stages (``assess``), the whole job from a study
folder to written outputs (``run``), what a run produces (``result``) and progress/cancel (``progress``)."""
