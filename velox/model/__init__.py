"""The split model: score(u, x) = w_u · f(x; θ). All model math lives in this package."""
