"""Memory planning: usage records and per-model planners, sharing across models as the policy
allows (the one usage path), and the reports of a plan."""
