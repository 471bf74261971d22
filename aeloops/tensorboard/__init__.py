"""What TensorBoard shows of a run: scalars, pictures, histograms, per-term gradient norms and the Projector."""
