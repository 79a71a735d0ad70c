"""Running a plan: events, arrivals and the release cursor, the run plan, the scheduler,
execution contexts, the shared loop, the Engine protocol, the fake engine."""
