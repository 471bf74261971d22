"""A trained model measured and served: likelihoods, anomaly scores and the SavedModel's signatures."""
