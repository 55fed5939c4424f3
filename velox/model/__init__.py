"""The split model: score(u, x) = w_u · f(x; θ). Its scoring, online update rules, the item corrections
served between retrains and selection policies live in this package; fitting a version on Spark is the
batch retrain's (``velox.batch.train``)."""
