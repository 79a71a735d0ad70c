"""Schedulability analysis in integer ns: demand and response-time bounds, admission of a
scenario's budgets, statistical WCET, task-set generators."""
