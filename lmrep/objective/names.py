"""The names of the objective's choices: distances (losses.py), decoders (decode.py) and learning-rate schedules
(schedule.py). Torch-free, so that the configs that offer them are read and checked before torch loads."""

LOSSES = ("l1", "l2", "cosine")
DECODERS = ("pinv", "l2", "cosine")
SCHEDULES = ("linear", "constant")
