"""The Spark retrain job and its controller. Never imports streams or serving."""
