"""Complete and StreamComplete: route, call the chosen model, fail over down the ranking."""
