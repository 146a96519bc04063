"""Sub-commands of the ``sam-gym`` command line (see :mod:`sam_gym.cli`)."""
