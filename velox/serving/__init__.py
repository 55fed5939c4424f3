"""The Starlette edge: predictions from local state. Never imports streams or batch."""
