"""Prompting policies for ``SamPrompt-v0`` and their trainers: the learned AlignSAM agent and the baselines.

Every policy implements Stable-Baselines3's ``predict()`` signature through
:class:`sam_gym.policy.PromptPolicy`, so that evaluation scores learned and heuristic policies with
the same code. ``agents`` depends on ``sam_gym``, never the reverse: the library reaches these
policies and training commands only by name (:mod:`sam_gym.policies`, :mod:`sam_gym.cli`).
"""
