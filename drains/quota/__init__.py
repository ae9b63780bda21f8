"""The quota: every signal, state, rule and action about the limits a drain's calls spend.

- ``kinds``: which limit a signal reports (session, weekly, one model's weekly, extra usage, spend
  cap, per-minute API budgets, overloaded) and how it reads;
- ``resets``: ``RateLimited`` and the one reset-time parser, for every format a backend sees;
- ``policy``: the pure rules (a backoff in force or stale, a probe due, the plan by limit kind);
- ``backoff``: recording, clearing and reading a backoff, and the probe's events;
- ``actions``: what follows a backoff (end the bursts a weekly limit outlasts, pause on a spend
  cap and email the operators);
- ``notes``: the texts said to operators about a limit.

Nothing is re-exported here: import the module that owns a name.
"""
