"""Per-sample gradients (closed-form last layer, torch.func for any parameters), their projection, and 2-D layouts."""
