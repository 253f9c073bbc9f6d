"""The demo (`make demo`, `python -m sagepilot_sandbox demo`): the main scenario step by step (`scenario`), its
rollout half with real traffic (`rollout`, `traffic`) and a failing container (`failures`); it checks its own
outcome.
"""
