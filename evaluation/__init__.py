"""Evaluation of policies: seeded rollouts in the simulated task world (``python -m evaluation``), run through
the same runtime core (``jala_runtime``) as the robot. Offline motion metrics on human-hand data live with
training (``training.metrics``)."""
